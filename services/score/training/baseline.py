"""The scorecard baseline: weight-of-evidence binning and a logistic regression.

This is how credit scores were built before gradient boosting, and still the yardstick regulators
know. It is trained on the same features, with the same folds, so the model card can put the two
side by side: the boosted model has to earn its complexity against it.

Binning is optbinning's optimal binning with its mixed-integer solver (single-threaded, so the
bins, and hence the card, are the same on every run).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from optbinning import BinningProcess
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

BINNING_SOLVER = "mip"
LOGISTIC_MAX_ITERATIONS = 1000


def out_of_fold_log_odds(
    features: NDArray[np.float64],
    labels: NDArray[np.int64],
    fold_of_row: NDArray[np.int64],
    feature_names: Sequence[str],
    *,
    progress: bool = False,
) -> NDArray[np.float64]:
    """Each row's log-odds of default from the scorecard fitted on the other folds."""
    log_odds = np.full(len(labels), np.nan)
    folds = range(int(fold_of_row.max()) + 1)
    for fold in tqdm(folds, desc="scorecard baseline", unit=" fold", disable=not progress):
        training, held_out = fold_of_row != fold, fold_of_row == fold
        log_odds[held_out] = _fit_and_score(
            features[training], labels[training], features[held_out], feature_names
        )
    assert not np.isnan(log_odds).any()
    return log_odds


def _fit_and_score(
    training_features: NDArray[np.float64],
    training_labels: NDArray[np.int64],
    scored_features: NDArray[np.float64],
    feature_names: Sequence[str],
) -> NDArray[np.float64]:
    binning = BinningProcess(
        list(feature_names),
        binning_fit_params={name: {"solver": BINNING_SOLVER} for name in feature_names},
        n_jobs=1,
    )
    with warnings.catch_warnings():
        # optbinning warns about its own use of deprecated pandas and scikit-learn options.
        warnings.simplefilter("ignore")
        binning.fit(training_features, training_labels)
        training_woe = binning.transform(training_features, metric="woe")
        scored_woe = binning.transform(scored_features, metric="woe")
    regression = LogisticRegression(max_iter=LOGISTIC_MAX_ITERATIONS)
    regression.fit(np.asarray(training_woe), training_labels)
    return np.asarray(regression.decision_function(np.asarray(scored_woe)), dtype=np.float64)
