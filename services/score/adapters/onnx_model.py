"""The score model run by onnxruntime: the `Model` and `ModelLoader` ports for ONNX model files.

An `OnnxModel` is immutable once built. Swapping models means loading a new one and replacing
the registry's reference to it, so a call that already holds the old model finishes on it.
The loader checks what only the file can tell (the graph loads, keeps the model contract's
inputs, outputs and feature order, and comes with a readable model card); the warm-up every
model passes before it serves is the service layer's (`service/model_warm_up.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import structlog
from numpy.typing import NDArray

from services.score.adapters.log_odds_graph import log_odds_only
from services.score.adapters.model_files import (
    ModelFileError,
    cpu_session,
    newest_model_directory,
    onnx_session,
    run_model,
    run_outputs,
)
from services.score.domain import model_contract
from services.score.domain.features import FEATURE_COUNT, FEATURE_NAMES
from services.score.service.model_warm_up import warm_up_rows
from services.score.service.ports import (
    ModelOutputs,
    ModelRejectedError,
    ModelVersionNotFoundError,
)

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

# Rows per onnxruntime call: large enough to amortise the call, small enough to keep memory flat.
BATCH_ROWS = 4096


@dataclass(frozen=True)
class OnnxModel:
    """One model ready to run rows: its session, version, card and when it was loaded."""

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


class OnnxModelLoader:
    """Loads the model versions kept as directories under `models_root` (see model_contract)."""

    def __init__(self, models_root: Path) -> None:
        self._models_root = models_root

    def newest_version(self) -> str | None:
        try:
            return newest_model_directory(self._models_root).name
        except ModelFileError:
            return None

    def load(self, model_version: str) -> OnnxModel:
        directory = self._models_root / model_version
        if not directory.is_dir():
            raise ModelVersionNotFoundError(model_version)
        return load_onnx_model(directory)


def load_onnx_model(model_directory: Path) -> OnnxModel:
    """Loads the model in `model_directory`, with the smaller log-odds graph when one applies.

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
    model = OnnxModel(
        version=model_directory.name,
        model_card_json=_read_card(card_path),
        loaded_at=datetime.now(UTC),
        session=session,
    )
    return _with_log_odds_session(model, model_bytes)


def _with_log_odds_session(model: OnnxModel, model_bytes: bytes) -> OnnxModel:
    """The model with the smaller log-odds graph, when one can be derived and agrees exactly
    with the full graph on the warm-up rows; otherwise the model as it is."""
    derived = log_odds_only(onnx.load_from_string(model_bytes))
    if derived is None:
        log.info("log_odds_graph_unavailable", model_version=model.version)
        return model
    fast = replace(model, log_odds_session=cpu_session(derived.SerializeToString()))
    rows = warm_up_rows()
    try:
        full = model.score_rows(rows)
    except Exception:  # the full graph's own failure is for the warm-up to report
        return model
    probability, log_odds = fast.probabilities_and_log_odds(rows)
    if not (
        np.array_equal(probability, full.probability_of_default)
        and np.array_equal(log_odds, full.log_odds_of_default)
    ):
        log.warning("log_odds_graph_disagrees", model_version=model.version)
        return model
    return fast


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
