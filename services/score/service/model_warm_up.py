"""The warm-up a model passes before it serves, whatever runs it.

A few rows run through the model, so that the first real call pays no first-run cost, and the
answers are checked against the model contract's own promise (`domain/model_contract.py`):
finite outputs, probabilities in [0, 1], and contributions that add up to the log-odds (with the
bias), so reasons agree with scores. A model that fails is rejected and never serves.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from services.score.domain import model_contract
from services.score.domain.features import FEATURE_COUNT
from services.score.service.ports import Model, ModelRejectedError

# Warm-up rows: all zeros, all ones and a few random rows, enough to touch every tree's paths.
WARM_UP_RANDOM_ROWS = 8
WARM_UP_SEED = 20051001


def warm_up_rows() -> NDArray[np.float64]:
    """The same rows on every call: a model's warm-up is reproducible."""
    generator = np.random.default_rng(WARM_UP_SEED)
    return np.vstack(
        [
            np.zeros((1, FEATURE_COUNT)),
            np.ones((1, FEATURE_COUNT)),
            generator.uniform(0.0, 3.0, size=(WARM_UP_RANDOM_ROWS, FEATURE_COUNT)),
        ]
    )


def warm_up(model: Model) -> None:
    """Runs the warm-up rows through `model`; raises `ModelRejectedError` when it fails them."""
    try:
        outputs = model.score_rows(warm_up_rows())
    except Exception as error:  # a runtime raises its own types for a graph that cannot run
        raise ModelRejectedError(f"{model.version}: the model fails on warm-up rows") from error
    if not (
        np.all(np.isfinite(outputs.log_odds_of_default))
        and np.all((outputs.probability_of_default >= 0) & (outputs.probability_of_default <= 1))
    ):
        raise ModelRejectedError(f"{model.version}: the model gives non-finite answers")
    explained = outputs.bias + outputs.contributions.sum(axis=1)
    gap = float(np.max(np.abs(explained - outputs.log_odds_of_default)))
    if not math.isfinite(gap) or gap > model_contract.CONTRIBUTION_SUM_TOLERANCE:
        raise ModelRejectedError(f"{model.version}: contributions do not add up to the log-odds")
