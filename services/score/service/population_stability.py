"""Population stability: how far a stream of scored rows has moved from the training rows.

The population stability index (PSI) of a distribution over bins against a reference one is
sum((actual - expected) * ln(actual / expected)) over the bins' shares; a share of 0 counts as
`SHARE_FLOOR`, so that one empty bin does not make the index infinite. Conventional reading:
below 0.10 stable, 0.10 to 0.25 worth a look, above 0.25 a shift the model was not trained for
(the model card gives the threshold that alerts).

Bins. A feature's bins are given by ascending edges e1 < ... < ek: (-inf, e1], (e1, e2], ...,
(ek, inf), and one more bin for missing values (NaN); the training side writes the edges (the
deciles of the training values) and the reference shares into the model card. The score's bins
are score bands.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

SHARE_FLOOR = 1e-4


def bin_index(values: NDArray[np.float64], edges: Sequence[float]) -> NDArray[np.int64]:
    """Each value's bin: 0 .. len(edges) for the intervals, len(edges) + 1 for a NaN."""
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="left")
    return np.where(np.isnan(values), len(edges) + 1, index).astype(np.int64)


def bin_shares(values: NDArray[np.float64], edges: Sequence[float]) -> NDArray[np.float64]:
    """The share of the values in each bin (`bin_index`), the missing bin last."""
    counts = np.bincount(bin_index(values, edges), minlength=len(edges) + 2)
    return counts / max(len(values), 1)


def population_stability_index(
    actual: Sequence[float] | NDArray[np.float64], expected: Sequence[float] | NDArray[np.float64]
) -> float:
    """PSI of the actual shares against the expected ones, bin by bin (same bins, same order)."""
    if len(actual) != len(expected):
        raise ValueError(f"{len(actual)} actual shares against {len(expected)} expected")
    index = 0.0
    for actual_share, expected_share in zip(actual, expected, strict=True):
        a, e = max(float(actual_share), SHARE_FLOOR), max(float(expected_share), SHARE_FLOOR)
        index += (a - e) * math.log(a / e)
    return index


def decile_edges(values: NDArray[np.float64]) -> list[float]:
    """The distinct deciles (10% .. 90%) of the values that are not missing: a feature's bins."""
    present = values[~np.isnan(values)]
    if not len(present):
        return []
    deciles = np.quantile(present, np.linspace(0.1, 0.9, 9), method="lower")
    return sorted({float(value) for value in deciles})
