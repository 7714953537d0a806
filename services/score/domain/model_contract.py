"""What the serving code may rely on in a model directory and its ONNX graph.

A model lives in `services/score/models/<version>/`:

* `model.onnx`: the graph described below;
* `model_card.json`: data hash, features, metrics, calibration, fairness, parity (see
  `services/score/training/train.py`);
* `report.md` and its PNG plots: the same evidence for people.

The graph takes one input and gives four outputs, all float64, computed in one inference pass:

* input `features` [N, FEATURE_COUNT]: rows of `compute_features`, in `FEATURE_NAMES` order
  (also stored in the graph's metadata under `feature_names`). A NaN is a missing value: a
  feature that had missing values in training (those read against the credit line, from model
  1.1.0) routes it as the model learnt; any other feature reads it as 0, as LightGBM does.
* `probability_of_default` [N, 1]: the logistic function of `log_odds_of_default`.
* `log_odds_of_default` [N, 1]: the model's raw score, the sum of its trees' leaves.
* `contributions` [N, FEATURE_COUNT]: each feature's share of the log-odds, measured from a
  reference profile (from model 1.2.0: the training rows scoring 600 or more, the model card's
  `reasons.reference_point`; before, the trees' average output): positive raises the
  probability of default above the reference's, so lowers the score. Path attributions of each
  tree (Saabas): the change in the node's expected value at every split on the feature along
  the row's path, minus the reference's.
* `bias` [N, 1]: the part of the log-odds no feature explains, the reference's log-odds; the
  same for every row. `bias + sum(contributions) == log_odds_of_default` to within 1e-5 (in fact to
  float32 rounding), so reasons always agree with the score.

Versions are dotted numbers ("1.0.0"); the newest is the largest, compared number by number.
"""

from __future__ import annotations

from collections.abc import Iterable

MODEL_FILE_NAME = "model.onnx"
MODEL_CARD_FILE_NAME = "model_card.json"
REPORT_FILE_NAME = "report.md"

INPUT_FEATURES = "features"
OUTPUT_PROBABILITY_OF_DEFAULT = "probability_of_default"
OUTPUT_LOG_ODDS_OF_DEFAULT = "log_odds_of_default"
OUTPUT_CONTRIBUTIONS = "contributions"
OUTPUT_BIAS = "bias"
OUTPUT_NAMES = (
    OUTPUT_PROBABILITY_OF_DEFAULT,
    OUTPUT_LOG_ODDS_OF_DEFAULT,
    OUTPUT_CONTRIBUTIONS,
    OUTPUT_BIAS,
)

# Keys of the graph's metadata_props.
METADATA_FEATURE_NAMES = "feature_names"
METADATA_MODEL_VERSION = "model_version"
METADATA_CONTRACT = "contract"
CONTRACT_VERSION = "sesame.score.model.v1"

# The promise the graph keeps, checked in training and in the tests.
CONTRIBUTION_SUM_TOLERANCE = 1e-5


def version_key(version: str) -> tuple[int, ...]:
    """The sort key of a version such as "1.10.0"; raises ValueError for anything else."""
    parts = version.split(".")
    if not all(part.isascii() and part.isdigit() for part in parts):
        raise ValueError(f"a model version is dotted numbers, got {version!r}")
    return tuple(int(part) for part in parts)


def newest_version(versions: Iterable[str]) -> str | None:
    """The newest of the given versions; names that are not versions are ignored."""
    valid: list[str] = []
    for version in versions:
        try:
            version_key(version)
        except ValueError:
            continue
        valid.append(version)
    return max(valid, key=version_key, default=None)
