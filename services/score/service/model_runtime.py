"""A loaded, validated and warmed-up model: what the score service runs rows through.

A `ModelRuntime` is immutable once built. Swapping models means building a new one and replacing
the service's reference to it, so a call that already holds the old runtime finishes on it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import structlog
from numpy.typing import NDArray

from services.score.domain import model_contract
from services.score.domain.features import FEATURE_COUNT, FEATURE_NAMES
from services.score.service.log_odds_graph import log_odds_only
from services.score.service.model_files import (
    ModelOutputs,
    cpu_session,
    onnx_session,
    run_model,
    run_outputs,
)

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

# Rows per onnxruntime call: large enough to amortise the call, small enough to keep memory flat.
BATCH_ROWS = 4096
# Warm-up rows: all zeros, all ones and a few random rows, enough to touch every tree's paths.
WARM_UP_RANDOM_ROWS = 8
WARM_UP_SEED = 20051001


class ModelRejectedError(ValueError):
    """The model directory cannot serve: missing, corrupt, or breaking the model contract."""


@dataclass(frozen=True)
class ModelRuntime:
    """One model ready to serve: its session, version, card and when it was loaded."""

    version: str
    model_card_json: str
    loaded_at: datetime
    session: onnxruntime.InferenceSession
    # The log-odds alone, for scores without reasons (see log_odds_graph); None: use `session`.
    log_odds_session: onnxruntime.InferenceSession | None = None

    @property
    def feature_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES

    def score_rows(self, rows: NDArray[np.float64]) -> ModelOutputs:
        """Probabilities, log-odds and contributions for rows in FEATURE_NAMES order."""
        return run_model(self.session, rows, batch_rows=BATCH_ROWS)

    def probabilities_and_log_odds(
        self, rows: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Probability and log-odds of default alone, for rows in FEATURE_NAMES order: the
        fast path for scores without reasons."""
        if self.log_odds_session is None:
            outputs = self.score_rows(rows)
            return outputs.probability_of_default, outputs.log_odds_of_default
        probability, log_odds = run_outputs(
            self.log_odds_session,
            rows,
            (
                model_contract.OUTPUT_PROBABILITY_OF_DEFAULT,
                model_contract.OUTPUT_LOG_ODDS_OF_DEFAULT,
            ),
            batch_rows=BATCH_ROWS,
        )
        return probability[:, 0], log_odds[:, 0]


def load_model_runtime(model_directory: Path) -> ModelRuntime:
    """Loads, validates and warms up the model in `model_directory`.

    Raises `ModelRejectedError` for anything that would make it unfit to serve, so a caller
    swapping models can keep the old one.
    """
    model_path = model_directory / model_contract.MODEL_FILE_NAME
    card_path = model_directory / model_contract.MODEL_CARD_FILE_NAME
    if not model_path.is_file():
        raise ModelRejectedError(f"{model_directory.name}: no {model_contract.MODEL_FILE_NAME}")
    model_bytes = model_path.read_bytes()  # read once: the session and the derived graph
    try:
        session = onnx_session(model_bytes)
    except Exception as error:  # onnxruntime raises its own types for a corrupt file
        raise ModelRejectedError(f"{model_directory.name}: the graph cannot be loaded") from error
    _check_input_width(session)
    runtime = ModelRuntime(
        version=model_directory.name,
        model_card_json=_read_card(card_path),
        loaded_at=datetime.now(UTC),
        session=session,
    )
    warm_up(runtime)
    return _with_log_odds_session(runtime, model_bytes)


def _with_log_odds_session(runtime: ModelRuntime, model_bytes: bytes) -> ModelRuntime:
    """The runtime with the smaller log-odds graph, when one can be derived and agrees exactly
    with the full graph on the warm-up rows; otherwise the runtime as it is."""
    derived = log_odds_only(onnx.load_from_string(model_bytes))
    if derived is None:
        log.info("log_odds_graph_unavailable", model_version=runtime.version)
        return runtime
    fast = replace(runtime, log_odds_session=cpu_session(derived.SerializeToString()))
    rows = _warm_up_rows()
    full = runtime.score_rows(rows)
    probability, log_odds = fast.probabilities_and_log_odds(rows)
    if not (
        np.array_equal(probability, full.probability_of_default)
        and np.array_equal(log_odds, full.log_odds_of_default)
    ):
        log.warning("log_odds_graph_disagrees", model_version=runtime.version)
        return runtime
    return fast


def warm_up(runtime: ModelRuntime) -> None:
    """Runs a few rows so the first real call pays no first-run cost, and checks the answers.

    The check is the contract's own promise: finite outputs, probabilities in [0, 1], and
    contributions that add up to the log-odds (with the bias), so reasons agree with scores.
    """
    rows = _warm_up_rows()
    try:
        outputs = run_model(runtime.session, rows, batch_rows=BATCH_ROWS)
    except Exception as error:
        raise ModelRejectedError(f"{runtime.version}: the graph fails on warm-up rows") from error
    if not (
        np.all(np.isfinite(outputs.log_odds_of_default))
        and np.all((outputs.probability_of_default >= 0) & (outputs.probability_of_default <= 1))
    ):
        raise ModelRejectedError(f"{runtime.version}: the graph gives non-finite answers")
    explained = outputs.bias + outputs.contributions.sum(axis=1)
    gap = float(np.max(np.abs(explained - outputs.log_odds_of_default)))
    if not math.isfinite(gap) or gap > model_contract.CONTRIBUTION_SUM_TOLERANCE:
        raise ModelRejectedError(f"{runtime.version}: contributions do not add up to the log-odds")


def _warm_up_rows() -> NDArray[np.float64]:
    generator = np.random.default_rng(WARM_UP_SEED)
    return np.vstack(
        [
            np.zeros((1, FEATURE_COUNT)),
            np.ones((1, FEATURE_COUNT)),
            generator.uniform(0.0, 3.0, size=(WARM_UP_RANDOM_ROWS, FEATURE_COUNT)),
        ]
    )


def _check_input_width(session: onnxruntime.InferenceSession) -> None:
    shape = session.get_inputs()[0].shape
    width = shape[1] if len(shape) == 2 else None
    # A symbolic width (a string) is allowed; the warm-up rows then prove the graph takes them.
    if len(shape) != 2 or (isinstance(width, int) and width != FEATURE_COUNT):
        raise ModelRejectedError(f"the graph's input shape {shape} is not [N, {FEATURE_COUNT}]")


def _read_card(card_path: Path) -> str:
    try:
        text = card_path.read_text(encoding="utf-8")
        json.loads(text)
    except (OSError, ValueError) as error:
        raise ModelRejectedError(f"{card_path.parent.name}: unreadable model card") from error
    return text
