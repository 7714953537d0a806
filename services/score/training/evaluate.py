"""Scores a CSV of the data set's schema with a model: `make evaluate CSV=path`.

`python -m services.score.training.evaluate path/to/file.csv[.gz] [--model-dir DIR]`

Rows take the serving path: the replay conversion into the ledger's credit history, the serving
adapter, `compute_features`, then the model's ONNX graph in an onnxruntime session with one
intra-op thread (the newest model under `services/score/models/` unless told otherwise). It
prints the AUC of the same rows with their credit line withheld (a history without a partner's
line, as a user whose record is Sesame's own has), and the last three lines printed are

    RESULT auc <value>
    RESULT ks <value>
    RESULT brier <value>
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from services.score.adapters.model_files import (
    MODELS_ROOT,
    newest_model_directory,
    onnx_session,
    run_model,
)
from services.score.domain import model_contract
from services.score.training import dataset, metrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score a CSV of the Taiwan data set's schema.")
    parser.add_argument("csv", type=Path, help="a .csv or .csv.gz file with the data set's columns")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="a model version directory (default: the newest under services/score/models)",
    )
    arguments = parser.parse_args(argv)
    model_directory = arguments.model_dir or newest_model_directory(MODELS_ROOT)
    data = dataset.load_labelled_features(arguments.csv)
    session = onnx_session(model_directory / model_contract.MODEL_FILE_NAME)
    outputs = run_model(session, data.features)
    without_line = run_model(session, data.features_without_credit_line)
    print(
        f"model {model_directory.name}: {len(data.labels)} rows, {int(data.labels.sum())} defaults"
    )
    auc_without_line = metrics.auc(without_line.log_odds_of_default, data.labels)
    print(f"RESULT auc_without_credit_line {auc_without_line:.6f}")
    print(f"RESULT auc {metrics.auc(outputs.log_odds_of_default, data.labels):.6f}")
    print(f"RESULT ks {metrics.ks(outputs.log_odds_of_default, data.labels):.6f}")
    print(f"RESULT brier {metrics.brier(outputs.probability_of_default, data.labels):.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
