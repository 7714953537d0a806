"""The order's life, row by row of the README's table, through the one `transition` function."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from services.common.errors import FailedPrecondition
from services.waiver.domain import lifecycle
from services.waiver.domain.decision import Decision, Limit, WaiverOutcome
from services.waiver.domain.lifecycle import (
    Cancel,
    CaptureHold,
    CloseObligation,
    Complete,
    Modify,
    ObligationOutcome,
    Pay,
    PlaceHold,
    RecordPayment,
    ReleaseHold,
    Sweep,
)
from services.waiver.domain.order import EXPIRY_AFTER_CREATION_US, Order, OrderState

from .conftest import DAY_US, HOUR_US, NOW_US, YUAN, make_policy, make_request

POLICY = make_policy()
GRACE, BREACH, WINDOW = POLICY.grace_period_us, POLICY.breach_period_us, POLICY.payment_window_us
FULL = Decision(WaiverOutcome.FULL, 99 * YUAN, 0, Limit.RISK_AMOUNT, ())


def created(start_us: int = NOW_US, decision: Decision = FULL) -> Order:
    change = lifecycle.create(
        make_request(start_us=start_us, end_us=start_us + 2 * HOUR_US), decision, POLICY, NOW_US
    )
    return change.order.evolve(hold_id="hold-1")


def completed(total_minor: int = 30 * YUAN) -> Order:
    change = lifecycle.transition(created(), Complete(total_minor, NOW_US, (), ()), NOW_US)
    return change.order.evolve(obligation_id="obligation-1")


def test_creation_holds_the_waived_amount_until_past_any_breach():
    change = lifecycle.create(make_request(), FULL, POLICY, NOW_US)

    assert change.order.state is OrderState.DOING
    (hold,) = change.effects
    assert isinstance(hold, PlaceHold) and hold.amount_minor == 99 * YUAN
    end_us = make_request().end_us
    assert NOW_US + hold.expires_in_us > end_us + GRACE + BREACH


def test_an_order_whose_window_has_not_started_is_created():
    assert (
        lifecycle.create(
            make_request(start_us=NOW_US + HOUR_US, end_us=NOW_US + 3 * HOUR_US),
            FULL,
            POLICY,
            NOW_US,
        ).order.state
        is OrderState.CREATED
    )


def test_a_denied_order_holds_nothing_and_ends_there():
    denied = Decision(WaiverOutcome.DENIED, 0, 99 * YUAN, Limit.MINIMUM_SCORE, ())
    change = lifecycle.create(make_request(), denied, POLICY, NOW_US)

    assert change.order.state is OrderState.DENIED
    assert change.effects == ()
    with pytest.raises(FailedPrecondition):
        lifecycle.transition(change.order, Cancel("x"), NOW_US)


def test_created_becomes_doing_when_the_window_starts():
    order = created(start_us=NOW_US + HOUR_US)

    assert order.state_at(NOW_US) is OrderState.CREATED
    assert order.state_at(NOW_US + HOUR_US) is OrderState.DOING
    change = lifecycle.transition(order, Sweep(), NOW_US + HOUR_US)
    assert (change.order.state, change.effects) == (OrderState.DOING, ())


def test_created_and_not_started_thirty_days_later_expires_and_releases_the_hold():
    order = created(start_us=NOW_US + 40 * DAY_US)
    expiry_us = NOW_US + EXPIRY_AFTER_CREATION_US

    assert order.state_at(expiry_us - 1) is OrderState.CREATED
    assert order.state_at(expiry_us) is OrderState.EXPIRED
    change = lifecycle.transition(order, Sweep(), expiry_us)
    assert change.order.state is OrderState.EXPIRED
    assert change.effects == (ReleaseHold(fulfilled=False),)


@pytest.mark.parametrize("start_offset_us", [HOUR_US, 0])
def test_cancel_releases_the_hold_before_completion(start_offset_us):
    order = created(start_us=NOW_US + start_offset_us)

    change = lifecycle.transition(order, Cancel("changed my mind"), NOW_US)

    assert change.order.state is OrderState.REVOKED
    assert change.order.state_reason == "changed my mind"
    assert change.effects == (ReleaseHold(fulfilled=False),)


def test_complete_captures_the_charge_into_an_obligation_due_within_the_payment_window():
    change = lifecycle.transition(created(), Complete(30 * YUAN, NOW_US, (), ()), NOW_US)

    assert change.order.state is OrderState.AWAITING_PAYMENT
    assert (change.order.total_minor, change.order.credit_charge_minor) == (30 * YUAN, 30 * YUAN)
    (capture,) = change.effects
    assert isinstance(capture, CaptureHold)
    assert (capture.amount_minor, capture.obligation_due_us) == (30 * YUAN, NOW_US + WINDOW)


def test_complete_with_nothing_to_charge_records_fulfilment():
    change = lifecycle.transition(created(), Complete(0, NOW_US, (), ()), NOW_US)

    assert change.order.state is OrderState.DONE
    assert change.effects == (ReleaseHold(fulfilled=True),)


def test_a_partial_waiver_charges_credit_only_up_to_the_waived_amount():
    partial = Decision(WaiverOutcome.PARTIAL, 40 * YUAN, 59 * YUAN, Limit.CAPACITY, ())
    change = lifecycle.transition(
        created(decision=partial), Complete(99 * YUAN, NOW_US, (), ()), NOW_US
    )

    assert change.order.credit_charge_minor == 40 * YUAN
    assert change.effects[0].amount_minor == 40 * YUAN


def test_doing_becomes_overdue_after_the_window_and_grace_then_breached():
    order = created()
    end_us = order.request.end_us

    assert order.state_at(end_us + GRACE - 1) is OrderState.DOING
    assert order.state_at(end_us + GRACE) is OrderState.OVERDUE
    assert order.state_at(end_us + GRACE + BREACH) is OrderState.BREACHED
    change = lifecycle.transition(order, Sweep(), end_us + GRACE + BREACH)
    capture, default = change.effects
    assert isinstance(capture, CaptureHold) and capture.amount_minor == 99 * YUAN
    assert default == CloseObligation(ObligationOutcome.DEFAULTED, 0, end_us + GRACE + BREACH)


def test_an_overdue_order_can_still_be_completed_a_late_return():
    order = lifecycle.transition(created(), Sweep(), created().request.end_us + GRACE).order

    assert order.state is OrderState.OVERDUE
    change = lifecycle.transition(
        order, Complete(10 * YUAN, NOW_US, (), ()), order.request.end_us + GRACE
    )
    assert change.order.state is OrderState.AWAITING_PAYMENT


def test_payment_in_parts_then_in_full_closes_the_obligation_on_time():
    order = completed(30 * YUAN)

    part = lifecycle.transition(order, Pay(10 * YUAN, NOW_US + HOUR_US), NOW_US + HOUR_US)
    assert part.order.state is OrderState.AWAITING_PAYMENT
    assert part.effects == (RecordPayment(10 * YUAN, NOW_US + HOUR_US, "payment-1"),)
    rest = lifecycle.transition(
        part.order, Pay(20 * YUAN, NOW_US + 2 * HOUR_US), NOW_US + 2 * HOUR_US
    )
    assert rest.order.state is OrderState.DONE
    assert rest.effects[1] == CloseObligation(ObligationOutcome.ON_TIME, 0, NOW_US + 2 * HOUR_US)


def test_a_payment_after_the_due_time_closes_the_obligation_late_by_whole_days():
    order = completed(30 * YUAN)
    paid_us = NOW_US + WINDOW + DAY_US + 1

    change = lifecycle.transition(order, Pay(30 * YUAN, paid_us), paid_us)

    assert change.effects[1] == CloseObligation(ObligationOutcome.LATE, 2, paid_us)


def test_a_payment_above_what_is_due_is_refused():
    with pytest.raises(FailedPrecondition) as refused:
        lifecycle.transition(completed(30 * YUAN), Pay(31 * YUAN, NOW_US), NOW_US)

    assert refused.value.reason == "PAYMENT_EXCEEDS_DUE"


def test_modify_only_lowers_the_total_and_closes_when_nothing_is_left():
    order = completed(30 * YUAN)

    lower = lifecycle.transition(order, Modify(20 * YUAN, "discount"), NOW_US)
    assert lower.order.credit_charge_minor == 20 * YUAN
    assert lower.order.state_reason == "discount"
    assert lower.effects[0].amount_due_minor == 20 * YUAN
    with pytest.raises(FailedPrecondition) as not_lower:
        lifecycle.transition(order, Modify(30 * YUAN, "same"), NOW_US)
    assert not_lower.value.reason == "TOTAL_NOT_LOWER"
    zero = lifecycle.transition(order, Modify(0, "on the house"), NOW_US)
    assert zero.order.state is OrderState.DONE
    assert zero.effects[-1].outcome is ObligationOutcome.ON_TIME


def test_an_unpaid_charge_becomes_overdue_then_a_recorded_default():
    order = completed(30 * YUAN)
    breach_us = NOW_US + WINDOW + GRACE + BREACH

    assert order.state_at(NOW_US + WINDOW + GRACE) is OrderState.OVERDUE
    change = lifecycle.transition(order, Sweep(), breach_us)
    assert change.order.state is OrderState.BREACHED
    assert change.effects == (CloseObligation(ObligationOutcome.DEFAULTED, 0, breach_us),)


@pytest.mark.parametrize(
    ("order_at", "event", "state"),
    [
        (lambda: completed(), Cancel("x"), "ORDER_STATE_AWAITING_PAYMENT"),
        (lambda: completed(), Complete(1, NOW_US, (), ()), "ORDER_STATE_AWAITING_PAYMENT"),
        (lambda: created(), Pay(1, NOW_US), "ORDER_STATE_DOING"),
        (lambda: created(), Modify(1, "x"), "ORDER_STATE_DOING"),
        (
            lambda: created(start_us=NOW_US + HOUR_US),
            Complete(1, NOW_US, (), ()),
            "ORDER_STATE_CREATED",
        ),
    ],
)
def test_a_step_from_the_wrong_state_is_refused_naming_the_state(order_at, event, state):
    with pytest.raises(FailedPrecondition) as refused:
        lifecycle.transition(order_at(), event, NOW_US)

    assert refused.value.reason == "ORDER_STATE_INVALID"
    assert refused.value.metadata == {"state": state}
    assert state in refused.value.message


def test_nothing_but_a_sweep_moves_a_breached_order():
    order = created()
    breach_us = order.request.end_us + GRACE + BREACH

    for event in (Cancel("x"), Complete(1, NOW_US, (), ()), Pay(1, NOW_US), Modify(0, "x")):
        with pytest.raises(FailedPrecondition):
            lifecycle.transition(order, event, breach_us)


events = st.one_of(
    st.builds(Complete, st.integers(0, 120 * YUAN), st.just(NOW_US), st.just(()), st.just(())),
    st.builds(Cancel, st.just("reason")),
    st.builds(Pay, st.integers(1, 100 * YUAN), st.just(NOW_US)),
    st.builds(Modify, st.integers(0, 100 * YUAN), st.just("reason")),
    st.just(Sweep()),
)


@given(st.lists(st.tuples(events, st.integers(0, 5 * DAY_US)), max_size=12))
def test_no_sequence_of_steps_breaks_the_orders_invariants(steps):
    order = created()
    now_us = NOW_US
    resolutions = 0
    for event, wait_us in steps:
        now_us += wait_us
        if isinstance(event, Complete) and event.total_minor > order.request.risk_minor:
            continue
        try:
            change = lifecycle.transition(order, event, now_us)
        except FailedPrecondition:
            continue
        resolutions += sum(isinstance(e, CaptureHold | ReleaseHold) for e in change.effects)
        order = change.order
        assert 0 <= order.paid_minor <= order.credit_charge_minor <= order.decision.waived_minor
        assert resolutions <= 1, "a hold is resolved once"
        if order.state in (OrderState.DONE,):
            assert order.paid_minor == order.credit_charge_minor
    assert order.state_at(now_us) in OrderState
