"""Reasons name at most four features that lowered the score, most important first, each in
English and Chinese with advice, and never a feature that lowered the risk."""

from __future__ import annotations

import math
import re

import pytest

from services.score.domain.features import FEATURE_COUNT, FEATURE_NAMES, FEATURES
from services.score.domain.reasons import (
    CATALOGUE,
    REASONS_MAX,
    STRONG_POINT_CODE,
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


def test_a_value_at_its_best_with_a_positive_contribution_is_named_without_blame() -> None:
    # No late payment at all, and the balance paid in full: the sentences say so, and that the
    # rest of the record makes them count for less, never that they lowered the score.
    values = vector(months_late_latest=0, payment_ratio_latest=1.0, months_since_late=6)
    pushes = contributions(months_late_latest=0.2, payment_ratio_latest=0.1, months_since_late=0.1)

    reasons = principal_reasons(values, pushes)

    assert [reason.feature for reason in reasons] == [
        "months_late_latest",
        "months_since_late",  # a tie with the payment ratio: feature order decides
        "payment_ratio_latest",
    ]
    assert {reason.code for reason in reasons} == {STRONG_POINT_CODE}
    assert reasons[0].message_en == (
        "Your most recent statement was paid on time, but with the rest of your record it "
        "counts for less than in a typical history scoring 600 or more."
    )
    assert all(CHINESE.search(reason.message_zh) for reason in reasons)


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
    "HIGH_UTILISATION": 0.95,
    "HIGH_AVERAGE_UTILISATION": 0.8,
    "BALANCE_NEAR_LIMIT": 1.02,
    "LOW_RECENT_PAYMENT": 0.1,
    "LOW_PREVIOUS_PAYMENT": 0.05,
    "LOW_PAYMENTS_OVERALL": 0.3,
    "LOW_PAYMENT_MONTH": 0.0,
    "MISSED_PAYMENTS": 2.0,
    "SMALL_PAYMENTS": 1_000.0,
    "FEW_MONTHS_PAID_IN_FULL": 2.0,
    "SMALL_RECENT_PAYMENT": 500.0,
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


def test_use_of_the_line_is_stated_with_its_share() -> None:
    (heavy,) = principal_reasons(
        vector(utilisation_latest=0.97), contributions(utilisation_latest=0.3)
    )

    assert heavy.message_en == "Your most recent balance uses 97% of your credit line."
    assert heavy.advice_en.startswith("Pay your balance down")


def test_a_tiny_share_is_not_rounded_down_to_nothing() -> None:
    (reason,) = principal_reasons(
        vector(utilisation_latest=0.001), contributions(utilisation_latest=0.3)
    )

    assert "uses less than 1% of your credit line" in reason.message_en
    assert "不到1%" in reason.message_zh


@pytest.mark.parametrize("share", [12.34, 1e6, 1e15])
def test_a_share_beyond_999_percent_is_said_in_three_digits(share: float) -> None:
    (reason,) = principal_reasons(
        vector(utilisation_latest=share), contributions(utilisation_latest=0.3)
    )

    assert "uses more than 999% of your credit line" in reason.message_en
    assert "超过999%" in reason.message_zh


@pytest.mark.parametrize("feature", FEATURE_NAMES)
def test_every_feature_has_a_sentence_for_every_value_it_can_take(feature: str) -> None:
    described = FEATURES[FEATURE_NAMES.index(feature)]
    low, high = described.low, described.high
    values = {low, high, (low + high) / 2, min(low + 1, high), min(low + 0.5, high)}
    if described.reads_credit_line:
        values.add(math.nan)
    for value in values:
        if not described.holds(value):
            continue
        (reason,) = principal_reasons(vector(**{feature: value}), contributions(**{feature: 0.3}))

        assert reason.message_en and reason.advice_en, (feature, value)
        assert CHINESE.search(reason.message_zh) and CHINESE.search(reason.advice_zh)
        assert not re.search(r"\d{4,}", reason.message_en + reason.message_zh), reason


def test_vectors_of_the_wrong_length_are_refused() -> None:
    with pytest.raises(ValueError, match="expected"):
        principal_reasons([0.0], [0.0])
