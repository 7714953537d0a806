"""From the model's log-odds of default to Sesame's 350-950 score.

Points-to-double-odds scaling, the scorecard industry's convention: 600 points at good:bad odds
of 19:1 (a 5% probability of default), and every 50 points double the odds of being good.

    factor = 50 / ln 2
    offset = 600 - factor * ln 19
    score  = offset + factor * ln(good:bad odds) = offset - factor * log_odds_of_default

then rounded to the nearest whole point and clamped to [350, 950]. 650 is odds of 38:1, about a
2.6% probability of default; 550 is 9.5:1, about 9.5%.
"""

from __future__ import annotations

import math

BASE_SCORE = 600
BASE_GOOD_BAD_ODDS = 19.0
POINTS_TO_DOUBLE_ODDS = 50
SCORE_MIN = 350
SCORE_MAX = 950

FACTOR = POINTS_TO_DOUBLE_ODDS / math.log(2.0)
OFFSET = BASE_SCORE - FACTOR * math.log(BASE_GOOD_BAD_ODDS)


def unclamped_score(log_odds_of_default: float) -> float:
    """The score before rounding and clamping; it may lie outside 350-950."""
    if not math.isfinite(log_odds_of_default):
        raise ValueError(f"log-odds of default must be finite, got {log_odds_of_default}")
    return OFFSET - FACTOR * log_odds_of_default


def score_from_log_odds(log_odds_of_default: float) -> int:
    """The score for the model's log-odds of default: rounded half up, clamped to 350-950."""
    rounded = math.floor(unclamped_score(log_odds_of_default) + 0.5)
    return min(max(rounded, SCORE_MIN), SCORE_MAX)


def score_from_probability(probability_of_default: float) -> int:
    """The score for a probability of default strictly between 0 and 1."""
    return score_from_log_odds(log_odds_from_probability(probability_of_default))


def log_odds_from_probability(probability_of_default: float) -> float:
    if not 0.0 < probability_of_default < 1.0:
        raise ValueError(
            f"probability must lie strictly between 0 and 1, got {probability_of_default}"
        )
    return math.log(probability_of_default) - math.log1p(-probability_of_default)


def probability_from_log_odds(log_odds_of_default: float) -> float:
    """The logistic function, written so that neither tail overflows."""
    if log_odds_of_default >= 0:
        return 1.0 / (1.0 + math.exp(-log_odds_of_default))
    exp_log_odds = math.exp(log_odds_of_default)
    return exp_log_odds / (1.0 + exp_log_odds)


def log_odds_at_score(score: float) -> float:
    """The log-odds of default that sits exactly at a score (the inverse of `unclamped_score`)."""
    return (OFFSET - score) / FACTOR


def probability_at_score(score: float) -> float:
    """The probability of default exactly at a score, for example about 0.0256 at 650."""
    return probability_from_log_odds(log_odds_at_score(score))
