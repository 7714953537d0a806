"""Reasons name at most four features that lowered the score, most important first, each in
English and Chinese with advice, and never a feature that lowered the risk."""

from __future__ import annotations

import math
import re

import pytest

from services.score.domain.features import FEATURE_COUNT, FEATURE_NAMES
from services.score.domain.reasons import (
    CATALOGUE,
    REASONS_MAX,
    principal_reasons,
)

CHINESE = re.compile(r"[\u4e00-\u9fff]")


def vector(**values: float) -> list[float]:
    """A feature vector of a blameless history, with the given features changed."""
    blameless = dict.fromkeys(FEATURE_NAMES, 0.0)
    blameless.update(
        months_since_late=6.0,
        credit_line=10_000_000.0,
        payment_ratio_latest=1.0,
        payment_ratio_previous=1.0,
        payment_ratio_overall=1.0,
        payment_ratio_lowest=1.0,
        payments_to_line=0.05,
    )
    unknown = set(values) - set(FEATURE_NAMES)
    assert not unknown, unknown
    blameless.update(values)
    return [blameless[name] for name in FEATURE_NAMES]


def contributions(**values: float) -> list[float]:
    by_name = dict.fromkeys(FEATURE_NAMES, 0.0)
    by_name.update(values)
    return [by_name[name] for name in FEATURE_NAMES]


def test_at_most_four_reasons_are_given_largest_contribution_first() -> None:
    values = vector(
        months_late_latest=2,
        months_late_worst=3,
        late_statement_count=2,
        utilisation_latest=0.9,
        payment_ratio_latest=0.05,
        months_paid_nothing=2,
    )
    pushes = contributions(
        months_late_latest=0.8,
        months_late_worst=0.3,
        late_statement_count=0.1,
        utilisation_latest=0.5,
        payment_ratio_latest=0.2,
        months_paid_nothing=0.05,
    )

    reasons = principal_reasons(values, pushes)

    assert len(reasons) == REASONS_MAX == 4
    assert [reason.feature for reason in reasons] == [
        "months_late_latest",
        "utilisation_latest",
        "months_late_worst",
        "payment_ratio_latest",
    ]
    assert [reason.log_odds_contribution for reason in reasons] == [0.8, 0.5, 0.3, 0.2]


def test_a_feature_that_lowered_the_risk_is_never_a_reason() -> None:
    values = vector(months_late_latest=1, utilisation_latest=0.2)
    pushes = contributions(months_late_latest=0.4, utilisation_latest=-0.6, credit_line=-0.3)

    reasons = principal_reasons(values, pushes)

    assert [reason.feature for reason in reasons] == ["months_late_latest"]


def test_a_history_whose_every_feature_lowered_the_risk_gets_no_reasons() -> None:
    pushes = [-0.1] * FEATURE_COUNT

    assert principal_reasons(vector(), pushes) == ()


def test_a_contribution_too_small_to_matter_is_not_a_reason() -> None:
    values = vector(months_late_latest=1)

    assert principal_reasons(values, contributions(months_late_latest=1e-6)) == ()


def test_a_value_that_is_not_adverse_is_not_blamed_even_with_a_positive_contribution() -> None:
    # No late payment at all, and the balance paid in full: no true sentence blames these.
    values = vector(months_late_latest=0, payment_ratio_latest=1.0, months_since_late=6)
    pushes = contributions(months_late_latest=0.2, payment_ratio_latest=0.1, months_since_late=0.1)

    assert principal_reasons(values, pushes) == ()


def test_each_reason_states_the_persons_own_value_in_english_and_chinese() -> None:
    values = vector(months_late_latest=2, utilisation_latest=0.87)
    pushes = contributions(months_late_latest=0.5, utilisation_latest=0.4)

    late, utilisation = principal_reasons(values, pushes)

    assert late.code == "RECENT_LATE_PAYMENT"
    assert late.message_en == "Your most recent statement was paid 2 months late."
    assert late.message_zh == "您最近一期账单逾期2个月才还款。"
    assert utilisation.message_en == "Your most recent balance uses 87% of your credit line."
    assert "87%" in utilisation.message_zh


def test_one_month_is_said_in_the_singular() -> None:
    (reason,) = principal_reasons(
        vector(months_late_latest=1), contributions(months_late_latest=0.5)
    )

    assert reason.message_en == "Your most recent statement was paid 1 month late."


def test_advice_says_what_to_do_not_just_to_improve() -> None:
    (reason,) = principal_reasons(
        vector(payment_ratio_latest=0.1), contributions(payment_ratio_latest=0.5)
    )

    assert reason.advice_en == "Pay your statements in full for three months."
    assert reason.advice_zh == "连续三个月全额还清账单。"


def test_ties_are_broken_by_feature_order_so_the_answer_never_changes() -> None:
    values = vector(months_late_latest=1, months_late_worst=1)
    pushes = contributions(months_late_latest=0.3, months_late_worst=0.3)

    first = principal_reasons(values, pushes)

    assert [reason.feature for reason in first] == ["months_late_latest", "months_late_worst"]
    assert principal_reasons(values, pushes) == first


# A value inside each template's range, by reason code.
SAMPLE_VALUES = {
    "RECENT_LATE_PAYMENT": 2.0,
    "PREVIOUS_LATE_PAYMENT": 3.0,
    "SERIOUS_LATE_PAYMENT": 4.0,
    "LATE_PAYMENTS_ADD_UP": 5.0,
    "FREQUENT_LATE_PAYMENTS": 2.0,
    "RECENT_DELINQUENCY": 1.0,
    "NO_CREDIT_LINE": math.nan,
    "SMALL_CREDIT_LINE": 2_000_000.0,
    "LITTLE_RECENT_USE": 0.01,
    "HIGH_UTILISATION": 0.95,
    "LITTLE_USE": 0.0,
    "HIGH_AVERAGE_UTILISATION": 0.8,
    "LITTLE_PEAK_USE": -0.01,
    "BALANCE_NEAR_LIMIT": 1.02,
    "RISING_BALANCE": 0.4,
    "NO_RECENT_PURCHASES": 0.0,
    "LOW_RECENT_PAYMENT": 0.1,
    "LOW_PREVIOUS_PAYMENT": 0.05,
    "LOW_PAYMENTS_OVERALL": 0.3,
    "LOW_PAYMENT_MONTH": 0.0,
    "MISSED_PAYMENTS": 2.0,
    "LOW_REPAYMENT_ACTIVITY": 0.001,
}
TEMPLATES = [
    (feature, template.code) for feature, templates in CATALOGUE.items() for template in templates
]


def test_the_catalogue_explains_every_feature_with_distinct_codes() -> None:
    assert tuple(CATALOGUE) == FEATURE_NAMES
    codes = [code for _, code in TEMPLATES]
    assert len(set(codes)) == len(codes)
    assert set(codes) == set(SAMPLE_VALUES)
    assert all(re.fullmatch(r"[A-Z][A-Z_]+[A-Z]", code) for code in codes)


@pytest.mark.parametrize(("feature", "code"), TEMPLATES)
def test_every_reason_has_a_sentence_and_advice_in_both_languages(feature: str, code: str) -> None:
    values = vector(**{feature: SAMPLE_VALUES[code]})

    (reason,) = principal_reasons(values, contributions(**{feature: 0.5}))

    assert (reason.feature, reason.code) == (feature, code)
    for english in (reason.message_en, reason.advice_en):
        assert english and english[0].isupper() and english.endswith(".")
        assert "{" not in english and "improve your score" not in english.lower()
    for chinese in (reason.message_zh, reason.advice_zh):
        assert CHINESE.search(chinese) and chinese.endswith("。") and "{" not in chinese


def test_little_use_and_heavy_use_are_told_apart() -> None:
    little, heavy = (
        principal_reasons(vector(utilisation_latest=value), contributions(utilisation_latest=0.3))
        for value in (0.01, 0.97)
    )

    assert little[0].code == "LITTLE_RECENT_USE"
    assert "Use your credit line" in little[0].advice_en
    assert heavy[0].message_en == "Your most recent balance uses 97% of your credit line."
    assert heavy[0].advice_en.startswith("Pay your balance down")


def test_paying_down_a_balance_or_paying_a_lot_is_never_blamed() -> None:
    values = vector(utilisation_change=-0.4, payments_to_line=0.3, new_spending_latest=0.5)
    pushes = contributions(utilisation_change=0.2, payments_to_line=0.2, new_spending_latest=0.2)

    assert principal_reasons(values, pushes) == ()


def test_a_tiny_share_is_not_rounded_down_to_nothing() -> None:
    (reason,) = principal_reasons(
        vector(payments_to_line=0.001), contributions(payments_to_line=0.3)
    )

    assert "averaged less than 1% of your credit line" in reason.message_en
    assert "不到1%" in reason.message_zh


def test_vectors_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(ValueError, match="expected"):
        principal_reasons([0.0], [0.0])
