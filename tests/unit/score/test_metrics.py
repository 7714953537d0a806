"""The model card's measures agree with their textbook definitions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve

from services.score.training import metrics


@pytest.fixture
def sample() -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(7)
    labels = (generator.random(3000) < 0.22).astype(np.int64)
    # Rounded so that many rows tie, which is where AUC and KS implementations differ.
    risk = np.round(labels * 0.8 + generator.normal(size=3000), 1)
    return risk, labels


def test_auc_matches_scikit_learn_including_ties(sample: tuple[np.ndarray, np.ndarray]) -> None:
    risk, labels = sample
    assert metrics.auc(risk, labels) == pytest.approx(roc_auc_score(labels, risk), abs=1e-12)


def test_ks_is_the_largest_gap_between_the_roc_curves_rates(
    sample: tuple[np.ndarray, np.ndarray],
) -> None:
    risk, labels = sample
    false_positive, true_positive, _ = roc_curve(labels, risk)
    assert metrics.ks(risk, labels) == pytest.approx(
        np.max(true_positive - false_positive), abs=1e-12
    )


def test_brier_matches_scikit_learn() -> None:
    probabilities = np.array([0.1, 0.9, 0.5, 0.2])
    labels = np.array([0, 1, 1, 0])
    assert metrics.brier(probabilities, labels) == pytest.approx(
        brier_score_loss(labels, probabilities)
    )


def test_a_perfect_ranking_has_auc_1_and_ks_1() -> None:
    assert metrics.auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert metrics.ks([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0


def test_identical_distributions_are_perfectly_stable() -> None:
    assert metrics.population_stability([10, 20, 30], [20, 40, 60]) == 0.0


def test_a_shifted_distribution_shows_in_population_stability() -> None:
    shifted = metrics.population_stability([50, 30, 20], [20, 30, 50])
    assert shifted == pytest.approx(2 * 0.3 * np.log(2.5))
    assert shifted > 0.25


def test_auc_needs_both_outcomes() -> None:
    with pytest.raises(ValueError, match="both"):
        metrics.auc([0.1, 0.2], [0, 0])
