"""`apply`: what each event does to a user's state, and what it refuses."""

from __future__ import annotations

import pytest

from services.ledger.domain.events import (
    CapacitySet,
    ConsentGranted,
    ConsentWithdrawn,
    CreditLineReported,
    HoldCaptured,
    HoldExpired,
    HoldPlaced,
    HoldReleased,
    ObligationClosed,
    ObligationCreated,
    ObligationReduced,
    PaymentRecorded,
    StatementAttached,
    StatementReported,
)
from services.ledger.domain.projection import ProjectionError, apply
from services.ledger.domain.records import (
    ConsentState,
    CreditLine,
    HoldState,
    ObligationOutcome,
    ObligationState,
    OutcomeCounts,
    RepaymentStatus,
    StatementPeriod,
    UserState,
)


def folded(*events):
    state = UserState.empty("user-1")
    for event in events:
        apply(state, event)
    return state


CAPACITY = CapacitySet("CNY", 1_000, "")


def placed(hold_id, amount_minor=100):
    return HoldPlaced(hold_id, "CNY", amount_minor, "ref", placed_at_us=1, expires_at_us=10)


def created(obligation_id, amount_minor=500, hold_id=""):
    return ObligationCreated(obligation_id, "CNY", amount_minor, 99, "fee", "ref", hold_id, 2)


def test_holds_add_to_held_and_every_resolution_takes_them_away():
    state = folded(CAPACITY, placed("a"), placed("b"), placed("c"), placed("d"))
    assert (state.account.held_minor, state.account.open_hold_count) == (400, 4)

    apply(
        state,
        HoldCaptured("a", captured_minor=60, released_minor=40, obligation_id="", captured_at_us=5),
    )
    apply(state, HoldReleased("b", fulfilled=True, released_at_us=6))
    apply(state, HoldReleased("c", fulfilled=False, released_at_us=6))
    apply(state, HoldExpired("d", expired_at_us=10))

    assert (state.account.held_minor, state.account.open_hold_count) == (0, 0)
    assert [state.holds[hold_id].state for hold_id in "abcd"] == [
        HoldState.CAPTURED,
        HoldState.RELEASED,
        HoldState.RELEASED,
        HoldState.EXPIRED,
    ]
    assert state.holds["a"].captured_minor == 60
    assert (state.holds["a"].resolved_at_us, state.holds["d"].resolved_at_us) == (5, 10)
    assert state.account.outcomes.fulfilled == 1


def test_obligations_move_outstanding_and_count_outcomes():
    state = folded(
        created("on-time"),
        created("late", 300),
        created("very-late", 200),
        created("defaulted", 100),
    )
    assert state.account.outstanding_minor == 1_100
    assert state.account.currency_code == "CNY"

    for obligation_id, amount_minor in (("on-time", 500), ("late", 300), ("very-late", 200)):
        apply(state, PaymentRecorded(obligation_id, amount_minor, paid_at_us=3))
    apply(state, PaymentRecorded("defaulted", 40, paid_at_us=3))
    apply(state, ObligationClosed("on-time", ObligationOutcome.ON_TIME, 0, 4))
    apply(state, ObligationClosed("late", ObligationOutcome.LATE, 30, 4))
    apply(state, ObligationClosed("very-late", ObligationOutcome.LATE, 31, 4))
    apply(state, ObligationClosed("defaulted", ObligationOutcome.DEFAULTED, 0, 4))

    assert state.account.outstanding_minor == 0
    assert state.account.outcomes == OutcomeCounts(
        on_time=1, late_up_to_30_days=1, late_over_30_days=1, defaulted=1
    )
    defaulted = state.obligations["defaulted"]
    assert (defaulted.state, defaulted.amount_paid_minor, defaulted.closed_at_us) == (
        ObligationState.CLOSED,
        40,
        4,
    )


def test_a_reduction_takes_its_difference_off_what_is_outstanding():
    state = folded(created("a", 500), created("b", 300), PaymentRecorded("a", 100, paid_at_us=3))
    assert state.account.outstanding_minor == 700

    apply(state, ObligationReduced("a", 500, 250, "discount", reduced_at_us=4))
    apply(state, ObligationReduced("b", 300, 0, "waived", reduced_at_us=5))

    assert state.account.outstanding_minor == 150
    assert (state.obligations["a"].amount_due_minor, state.obligations["b"].amount_due_minor) == (
        250,
        0,
    )
    # Nothing else about the obligation changes: it stays open, with what was paid.
    assert state.obligations["a"].state is ObligationState.OPEN
    assert state.obligations["a"].amount_paid_minor == 100


def test_partner_data_replaces_what_was_reported_before():
    first = StatementReported("bank", 2005, 4, "TWD", 100, 0, RepaymentStatus.NO_USE, 0)
    correction = StatementReported("bank", 2005, 4, "TWD", 120, 0, RepaymentStatus.LATE, 1)

    state = folded(CreditLineReported("bank", "TWD", 5_000), first, correction)

    assert state.credit_line == CreditLine("user-1", "bank", "TWD", 5_000)
    assert list(state.statements) == [StatementPeriod(2005, 4)]
    statement = state.statements[StatementPeriod(2005, 4)]
    assert (statement.balance_minor, statement.months_late) == (120, 1)


@pytest.mark.parametrize(
    "events",
    [
        [CAPACITY, placed("a"), placed("a")],
        [CAPACITY, HoldReleased("missing", fulfilled=False, released_at_us=1)],
        [CAPACITY, placed("a"), HoldExpired("a", 10), HoldExpired("a", 10)],
        [CAPACITY, placed("a", 100), HoldCaptured("a", 100, 1, "", 2)],
        [placed("a")],  # no capacity, so no currency for the hold
        [created("o"), PaymentRecorded("o", 501, 3)],
        [created("o"), ObligationClosed("o", ObligationOutcome.ON_TIME, 0, 3)],
        [created("o"), ObligationClosed("o", ObligationOutcome.LATE, 0, 3)],
        [created("o"), created("o")],
        [CAPACITY, placed("a"), CapacitySet("USD", 5, "")],
        [created("o"), ObligationReduced("o", 500, 500, "", 3)],
        [created("o"), PaymentRecorded("o", 200, 3), ObligationReduced("o", 500, 199, "", 4)],
        [created("o"), ObligationReduced("o", 400, 300, "", 3)],
        [
            created("o"),
            ObligationClosed("o", ObligationOutcome.DEFAULTED, 0, 3),
            ObligationReduced("o", 500, 0, "", 4),
        ],
        [ObligationReduced("missing", 500, 0, "", 4)],
        [ConsentGranted(1), ConsentGranted(2)],
        [ConsentWithdrawn(1)],
        [created("o"), StatementAttached("o", "words", 3)],
        [
            created("o"),
            PaymentRecorded("o", 500, 3),
            ObligationClosed("o", ObligationOutcome.ON_TIME, 0, 3),
            StatementAttached("o", "words", 4),
        ],
        [StatementAttached("missing", "words", 4)],
        [
            created("o"),
            ObligationClosed("o", ObligationOutcome.DEFAULTED, 0, 3),
            StatementAttached("o", " words ", 4),
        ],
    ],
    ids=[
        "a hold placed twice",
        "releasing an unknown hold",
        "expiring a hold twice",
        "capturing and releasing more than held",
        "a hold in no currency",
        "paying more than due",
        "on time without full payment",
        "late without days",
        "an obligation created twice",
        "switching currency while holding",
        "a reduction that lowers nothing",
        "a reduction below what was paid",
        "a reduction from another amount than the one due",
        "reducing a closed obligation",
        "reducing an unknown obligation",
        "consent granted twice",
        "consent withdrawn never granted",
        "a statement on an open obligation",
        "a statement on an obligation closed on time",
        "a statement on an unknown obligation",
        "a statement not trimmed",
    ],
)
def test_an_event_that_cannot_follow_the_state_is_refused(events):
    state = UserState.empty("user-1")

    with pytest.raises(ProjectionError):
        for event in events:
            apply(state, event)


def test_a_snapshot_is_unaffected_by_later_events():
    state = folded(CAPACITY, placed("a"))
    snapshot = state.snapshot()

    apply(state, HoldReleased("a", fulfilled=True, released_at_us=3))

    assert snapshot.holds["a"].state is HoldState.OPEN
    assert snapshot.account.held_minor == 100


def test_consent_granted_withdrawn_and_granted_again_keeps_when_each_began():
    state = folded(ConsentGranted(1))
    assert (state.account.consent, state.account.consent_since_us) == (ConsentState.GRANTED, 1)

    apply(state, ConsentWithdrawn(5))
    assert (state.account.consent, state.account.consent_since_us) == (ConsentState.WITHDRAWN, 5)

    apply(state, ConsentGranted(9))
    assert (state.account.consent, state.account.consent_since_us) == (ConsentState.GRANTED, 9)


def test_a_later_statement_replaces_the_one_shown_on_a_defaulted_obligation():
    state = folded(
        created("o"),
        ObligationClosed("o", ObligationOutcome.DEFAULTED, 0, 3),
        StatementAttached("o", "first", 4),
        StatementAttached("o", "second", 5),
    )

    obligation = state.obligations["o"]
    assert (obligation.attached_statement, obligation.attached_statement_at_us) == ("second", 5)
    assert obligation.as_of(2).attached_statement == ""
    assert obligation.as_of(5).attached_statement == "second"
