"""The 350-950 scale: 600 points at good:bad odds of 19:1, 50 points double the odds."""

from __future__ import annotations

import math

import pytest

from services.score.domain import scoring


def log_odds_of_default_for_good_bad_odds(good_bad_odds: float) -> float:
    return -math.log(good_bad_odds)


def test_good_bad_odds_of_19_to_1_score_600() -> None:
    assert scoring.score_from_log_odds(log_odds_of_default_for_good_bad_odds(19.0)) == 600


def test_a_five_percent_probability_of_default_scores_600() -> None:
    assert scoring.score_from_probability(0.05) == 600


@pytest.mark.parametrize("doublings", [-4, -2, -1, 1, 2, 4, 6])
def test_every_doubling_of_the_odds_adds_50_points(doublings: int) -> None:
    odds = 19.0 * 2.0**doublings
    exact = scoring.unclamped_score(log_odds_of_default_for_good_bad_odds(odds))
    assert exact == pytest.approx(600 + 50 * doublings, abs=1e-9)


def test_650_is_about_a_2_6_percent_probability_of_default() -> None:
    assert scoring.probability_at_score(650) == pytest.approx(1 / 39, rel=1e-12)
    assert round(scoring.probability_at_score(650), 3) == 0.026


def test_scores_are_clamped_to_350_and_950() -> None:
    assert scoring.score_from_probability(0.999999) == 350
    assert scoring.score_from_probability(1e-9) == 950
    assert scoring.score_from_log_odds(50.0) == 350
    assert scoring.score_from_log_odds(-50.0) == 950


def test_a_higher_probability_of_default_never_scores_higher() -> None:
    probabilities = [index / 1000 for index in range(1, 1000)]
    scores = [scoring.score_from_probability(probability) for probability in probabilities]
    assert scores == sorted(scores, reverse=True)


def test_scores_round_to_the_nearest_point() -> None:
    assert scoring.score_from_log_odds(scoring.log_odds_at_score(612.4)) == 612
    assert scoring.score_from_log_odds(scoring.log_odds_at_score(612.6)) == 613


def test_the_probability_and_the_log_odds_convert_both_ways() -> None:
    for probability in (1e-6, 0.05, 0.5, 0.77, 1 - 1e-6):
        log_odds = scoring.log_odds_from_probability(probability)
        assert scoring.probability_from_log_odds(log_odds) == pytest.approx(probability, rel=1e-12)


def test_extreme_log_odds_give_a_probability_without_overflow() -> None:
    assert scoring.probability_from_log_odds(-1000.0) == 0.0
    assert scoring.probability_from_log_odds(1000.0) == 1.0


@pytest.mark.parametrize("log_odds", [math.nan, math.inf, -math.inf])
def test_a_log_odds_that_is_not_finite_is_refused(log_odds: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        scoring.score_from_log_odds(log_odds)


@pytest.mark.parametrize("probability", [0.0, 1.0, -0.1, 1.5])
def test_a_probability_outside_0_to_1_is_refused(probability: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        scoring.score_from_probability(probability)
