"""Feature rows a history could give: every value within its feature's range (a whole number
where the feature counts), for tests that score explicit rows."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from services.score.domain.features import FEATURES

# Where drawn values of the unbounded features stop: shares of a line up to 3, amounts and
# lines up to 10^7 minor units, counts as the features define them.
DRAWN_HIGH_MAX = {"share": 3.0, "amount": 1e7}


def valid_rows(rng: np.random.Generator, count: int) -> NDArray[np.float64]:
    """`count` rows of values drawn within every feature's range; whole numbers stay whole."""
    rows = np.empty((count, len(FEATURES)))
    for index, feature in enumerate(FEATURES):
        high = min(feature.high, DRAWN_HIGH_MAX["amount" if feature.whole else "share"])
        if feature.whole and feature.high > 1e6:  # a credit line
            high = DRAWN_HIGH_MAX["amount"]
        values = rng.uniform(max(feature.low, 0.0), high, count)
        rows[:, index] = np.floor(values) if feature.whole else values
    return rows


def valid_row() -> list[float]:
    """One valid row: the same every call."""
    return valid_rows(np.random.default_rng(0), 1)[0].tolist()
