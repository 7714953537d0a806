"""Where models live, and how a model file is run with onnxruntime.

Serving (`onnx_model.py`) and training share this module: training's parity checks and
`make evaluate` run the graph exactly as the score service does, one onnxruntime session on the
CPU with one intra-op thread.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from numpy.typing import NDArray

from services.score.domain import model_contract
from services.score.domain.features import FEATURE_COUNT, FEATURE_NAMES
from services.score.service.ports import ModelOutputs

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
MODELS_ROOT = REPOSITORY_ROOT / "services" / "score" / "models"


class ModelFileError(ValueError):
    """A model directory or graph is missing or does not keep the model contract."""


def newest_model_directory(models_root: Path = MODELS_ROOT) -> Path:
    """The directory of the newest model version under `models_root`."""
    names = (
        [path.name for path in models_root.iterdir() if path.is_dir()]
        if models_root.is_dir()
        else []
    )
    version = model_contract.newest_version(names)
    if version is None:
        raise ModelFileError(f"no model version directory under {models_root}")
    return models_root / version


def onnx_session(model: bytes | Path) -> onnxruntime.InferenceSession:
    """A session for a model file, refused (`ModelFileError`) when it breaks the contract."""
    session = cpu_session(model)
    _check_contract(session)
    return session


def cpu_session(model: bytes | Path) -> onnxruntime.InferenceSession:
    """A CPU session with one intra-op thread (processes, not threads, scale the service)."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def graph_feature_names(model_path: Path) -> tuple[str, ...]:
    """The feature order stored in a model file's metadata."""
    metadata = {entry.key: entry.value for entry in onnx.load(str(model_path)).metadata_props}
    return tuple(json.loads(metadata[model_contract.METADATA_FEATURE_NAMES]))


def run_model(
    session: onnxruntime.InferenceSession, rows: NDArray[np.float64], *, batch_rows: int = 4096
) -> ModelOutputs:
    """All four outputs for `rows` (float64, FEATURE_NAMES order), in batches of `batch_rows`."""
    probability, log_odds, contributions, bias = run_outputs(
        session, rows, model_contract.OUTPUT_NAMES, batch_rows=batch_rows
    )
    return ModelOutputs(
        probability_of_default=probability[:, 0],
        log_odds_of_default=log_odds[:, 0],
        contributions=contributions,
        bias=bias[:, 0],
    )


def run_outputs(
    session: onnxruntime.InferenceSession,
    rows: NDArray[np.float64],
    output_names: Sequence[str],
    *,
    batch_rows: int = 4096,
) -> list[NDArray[np.float64]]:
    """The named outputs for `rows` (float64, FEATURE_NAMES order) as float64 arrays of one row
    per input row, run in batches of `batch_rows`."""
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != FEATURE_COUNT:
        raise ValueError(f"expected rows of {FEATURE_COUNT} features, got shape {rows.shape}")
    parts = [
        session.run(
            list(output_names), {model_contract.INPUT_FEATURES: rows[start : start + batch_rows]}
        )
        for start in range(0, len(rows), batch_rows)
    ]
    if not parts:
        width = {model_contract.OUTPUT_CONTRIBUTIONS: FEATURE_COUNT}
        return [np.zeros((0, width.get(name, 1))) for name in output_names]
    return [
        np.concatenate([np.asarray(part[index], dtype=np.float64) for part in parts])
        for index in range(len(output_names))
    ]


def _check_contract(session: onnxruntime.InferenceSession) -> None:
    inputs = [tensor.name for tensor in session.get_inputs()]
    outputs = {tensor.name for tensor in session.get_outputs()}
    if inputs != [model_contract.INPUT_FEATURES] or outputs != set(model_contract.OUTPUT_NAMES):
        raise ModelFileError(
            f"the graph's inputs {inputs} and outputs {sorted(outputs)} break the contract"
        )
    metadata = session.get_modelmeta().custom_metadata_map
    names = tuple(json.loads(metadata.get(model_contract.METADATA_FEATURE_NAMES, "[]")))
    if names != FEATURE_NAMES:
        raise ModelFileError("the graph's feature order differs from FEATURE_NAMES")
