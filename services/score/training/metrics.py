"""The measures the model card reports, written out so their definitions are in one place.

`risk` is anything that orders rows by how likely they are to default (probability, log-odds or
a negated score); `labels` are 1 for a default and 0 otherwise.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Population stability needs a floor on empty bands, or one empty band makes it infinite.
PSI_SHARE_FLOOR = 1e-4


def _as_arrays(risk: ArrayLike, labels: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    risk_array = np.asarray(risk, dtype=np.float64).reshape(-1)
    label_array = np.asarray(labels, dtype=np.int64).reshape(-1)
    if risk_array.shape != label_array.shape:
        raise ValueError("risk and labels must have the same length")
    if not np.isin(label_array, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    defaults = int(label_array.sum())
    if defaults == 0 or defaults == len(label_array):
        raise ValueError("AUC and KS need both defaults and non-defaults")
    return risk_array, label_array


def auc(risk: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve: the chance a random default is ranked riskier than a random
    non-default, ties counting one half (the Mann-Whitney statistic)."""
    risk_array, label_array = _as_arrays(risk, labels)
    order = np.argsort(risk_array, kind="mergesort")
    sorted_risk = risk_array[order]
    ranks = np.empty(len(risk_array), dtype=np.float64)
    # Average ranks over ties, 1-based.
    boundaries = np.flatnonzero(np.diff(sorted_risk)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(sorted_risk)]))
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    defaults = float(label_array.sum())
    non_defaults = float(len(label_array) - defaults)
    rank_sum = float(ranks[label_array == 1].sum())
    return (rank_sum - defaults * (defaults + 1) / 2.0) / (defaults * non_defaults)


def ks(risk: ArrayLike, labels: ArrayLike) -> float:
    """Kolmogorov-Smirnov statistic: the largest gap between the cumulative shares of defaults
    and of non-defaults when rows are taken from the riskiest down (0 to 1)."""
    risk_array, label_array = _as_arrays(risk, labels)
    order = np.argsort(-risk_array, kind="mergesort")
    sorted_risk = risk_array[order]
    sorted_labels = label_array[order]
    defaults_share = np.cumsum(sorted_labels) / sorted_labels.sum()
    non_defaults_share = np.cumsum(1 - sorted_labels) / (1 - sorted_labels).sum()
    # Only compare at the end of a run of tied values, where a cut-off can actually be placed.
    last_of_ties = np.append(np.diff(sorted_risk) != 0, True)
    return float(np.max(np.abs(defaults_share - non_defaults_share)[last_of_ties]))


def brier(probabilities: ArrayLike, labels: ArrayLike) -> float:
    """Mean squared difference between the predicted probability of default and the outcome."""
    probability_array = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    label_array = np.asarray(labels, dtype=np.float64).reshape(-1)
    if probability_array.shape != label_array.shape:
        raise ValueError("probabilities and labels must have the same length")
    return float(np.mean((probability_array - label_array) ** 2))


def population_stability(expected_counts: ArrayLike, actual_counts: ArrayLike) -> float:
    """Population stability index between two distributions over the same bands:
    sum((actual - expected) * ln(actual / expected)) over the bands' shares. Below 0.10 is
    stable, 0.10 to 0.25 worth a look, above 0.25 a significant shift."""
    expected = np.asarray(expected_counts, dtype=np.float64)
    actual = np.asarray(actual_counts, dtype=np.float64)
    if expected.shape != actual.shape or expected.sum() <= 0 or actual.sum() <= 0:
        raise ValueError("two non-empty distributions over the same bands are needed")
    expected_share = np.maximum(expected / expected.sum(), PSI_SHARE_FLOOR)
    actual_share = np.maximum(actual / actual.sum(), PSI_SHARE_FLOOR)
    return float(np.sum((actual_share - expected_share) * np.log(actual_share / expected_share)))
