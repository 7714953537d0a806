"""The decision: the largest waiver within the risk amount, the policy's cap, the remaining
capacity and the expected-loss budget, in whole units; reasons a person can read."""

from __future__ import annotations

import math

from hypothesis import given, strategies as st

from services.waiver.domain.decision import Limit, ProvenAction, WaiverOutcome, decide

from .conftest import YUAN, make_policy, make_score


def decision(risk_minor=99 * YUAN, score=None, capacity=3000 * YUAN, remaining=None, **policy):
    return decide(
        risk_minor=risk_minor,
        policy=make_policy(**policy),
        score=make_score() if score is None else score,
        capacity_minor=capacity,
        remaining_capacity_minor=capacity if remaining is None else remaining,
        currency_code="CNY",
        unit_minor=YUAN,
    )


def test_a_reliable_user_gets_the_whole_deposit_waived():
    made = decision()

    assert made.outcome is WaiverOutcome.FULL
    assert (made.waived_minor, made.deposit_minor) == (99 * YUAN, 0)
    assert made.reasons == ()


def test_the_expected_loss_budget_shrinks_the_waiver_of_an_expensive_item():
    # 5% default probability, 30 yuan budget: at most 600 yuan of a 5,000 yuan car.
    made = decision(risk_minor=5000 * YUAN, max_waiver_minor=8000 * YUAN, score=make_score(pd=0.05))

    assert made.outcome is WaiverOutcome.PARTIAL
    assert made.waived_minor == 600 * YUAN
    assert made.deposit_minor == 4400 * YUAN
    assert made.limited_by is Limit.LOSS_BUDGET
    assert made.reasons[0].code == "RECENT_LATE_PAYMENT"


def test_the_waiver_is_rounded_down_to_whole_units():
    made = decision(risk_minor=5000 * YUAN, max_waiver_minor=8000 * YUAN, score=make_score(pd=0.07))

    assert made.waived_minor == 428 * YUAN  # 30 / 0.07 = 428.57


def test_below_the_minimum_score_nothing_is_waived_and_the_scores_reasons_say_why():
    made = decision(score=make_score(score=449, pd=0.01))

    assert made.outcome is WaiverOutcome.DENIED
    assert made.waived_minor == 0 and made.deposit_minor == 99 * YUAN
    assert [reason.code for reason in made.reasons] == ["RECENT_LATE_PAYMENT"]


def test_what_the_scores_model_proved_would_help_follows_the_first_reason():
    actions = (
        ProvenAction("ON_TIME_THREE_MONTHS", "Pay on time for three months.", "按时还款三个月。"),
        ProvenAction("PAY_LATEST_IN_FULL", "Pay in full.", "全额还清。"),
    )

    made = decision(score=make_score(score=449, pd=0.01, actions=actions))

    assert [reason.code for reason in made.reasons] == [
        "RECENT_LATE_PAYMENT",
        "ON_TIME_THREE_MONTHS",
    ]
    proven = made.reasons[1]
    assert proven.advice("en") == "Pay on time for three months."
    assert proven.advice("zh") == "按时还款三个月。"
    assert "449" not in proven.message("en") + proven.message("zh")


def test_the_merchants_cap_limits_the_waiver_and_says_so():
    made = decision(risk_minor=500 * YUAN, score=make_score(pd=0.001))

    assert made.outcome is WaiverOutcome.PARTIAL
    assert made.waived_minor == 300 * YUAN
    assert made.reasons[0].code == "MERCHANT_LIMIT"
    assert "300 CNY" in made.reasons[0].message_en


def test_other_open_orders_using_the_capacity_are_named():
    made = decision(risk_minor=99 * YUAN, capacity=200 * YUAN, remaining=50 * YUAN)

    assert made.outcome is WaiverOutcome.PARTIAL
    assert made.waived_minor == 50 * YUAN
    assert made.reasons[0].code == "CAPACITY_IN_USE"


def test_a_capacity_smaller_than_the_deposit_is_named_as_a_limit():
    made = decision(risk_minor=500 * YUAN, capacity=200 * YUAN, max_waiver_minor=1000 * YUAN)

    assert made.waived_minor == 200 * YUAN
    assert made.reasons[0].code == "CAPACITY_LIMIT"


def test_a_thin_file_gets_the_starter_waiver_at_most():
    thin = make_score(score=None, pd=None, reasons=())

    assert decision(score=thin).outcome is WaiverOutcome.FULL
    partial = decision(risk_minor=150 * YUAN, score=thin)
    assert (partial.outcome, partial.waived_minor) == (WaiverOutcome.PARTIAL, 99 * YUAN)
    assert partial.reasons[0].code == "THIN_FILE"


def test_a_thin_file_is_denied_where_the_scenario_says_so():
    from services.waiver.domain.policy import ThinFileTreatment

    thin = make_score(score=None, pd=None, reasons=())
    made = decision(
        score=thin, thin_file_treatment=ThinFileTreatment.DENY, thin_file_max_waiver_minor=0
    )

    assert made.outcome is WaiverOutcome.DENIED
    assert made.reasons[0].code == "THIN_FILE"


def test_without_a_score_nothing_is_ever_waived():
    made = decide(
        risk_minor=99 * YUAN,
        policy=make_policy(),
        score=None,
        capacity_minor=3000 * YUAN,
        remaining_capacity_minor=3000 * YUAN,
        currency_code="CNY",
        unit_minor=YUAN,
    )

    assert made.outcome is WaiverOutcome.DENIED
    assert made.reasons[0].code == "SCORING_UNAVAILABLE"


amounts = st.integers(min_value=1, max_value=20_000 * YUAN)


@given(
    risk=amounts,
    cap=amounts,
    budget=amounts,
    capacity=st.integers(min_value=0, max_value=20_000 * YUAN),
    used=st.integers(min_value=0, max_value=20_000 * YUAN),
    score=st.integers(min_value=350, max_value=950),
    pd=st.floats(min_value=0.0, max_value=1.0),
)
def test_every_decision_keeps_every_limit(risk, cap, budget, capacity, used, score, pd):
    made = decision(
        risk_minor=risk,
        score=make_score(score=score, pd=pd),
        capacity=capacity,
        remaining=capacity - used,
        max_waiver_minor=cap,
        expected_loss_budget_minor=budget,
        minimum_score=450,
    )

    assert made.waived_minor + made.deposit_minor == risk
    assert 0 <= made.waived_minor <= min(risk, cap, max(0, capacity - used))
    assert pd * made.waived_minor <= budget * (1 + 1e-9)
    assert (made.outcome is WaiverOutcome.FULL) == (made.waived_minor == risk)
    assert (made.outcome is WaiverOutcome.DENIED) == (made.waived_minor == 0)
    if made.outcome is WaiverOutcome.PARTIAL:
        assert made.waived_minor % YUAN == 0
    if score < 450:
        assert made.outcome is WaiverOutcome.DENIED
    assert len(made.reasons) <= 4
    assert (made.reasons == ()) == (made.outcome is WaiverOutcome.FULL)
    for reason in made.reasons:
        # Merchants relay the reasons: they never carry the score or the probability.
        text = reason.message_en + reason.message_zh + reason.advice_en + reason.advice_zh
        assert str(score) not in text or str(score) in "30030099"
        assert f"{pd:.2f}" not in text or pd == 0


@given(
    risk=amounts,
    lower=st.floats(min_value=0.0, max_value=1.0),
    higher=st.floats(min_value=0.0, max_value=1.0),
)
def test_a_lower_probability_of_default_never_lowers_the_waiver(risk, lower, higher):
    lower, higher = sorted((lower, higher))
    safer = decision(risk_minor=risk, score=make_score(pd=lower), max_waiver_minor=20_000 * YUAN)
    riskier = decision(risk_minor=risk, score=make_score(pd=higher), max_waiver_minor=20_000 * YUAN)

    assert safer.waived_minor >= riskier.waived_minor
    assert not math.isnan(safer.waived_minor)
