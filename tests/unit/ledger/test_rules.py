"""The ledger's rules, one decision at a time, on plain states (no storage)."""

from __future__ import annotations

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.money import Money
from services.ledger.domain import commands, rules
from services.ledger.domain.events import (
    CapacitySet,
    ConsentGranted,
    ConsentWithdrawn,
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
from services.ledger.domain.projection import apply
from services.ledger.domain.records import (
    ConsentState,
    ObligationOutcome,
    RepaymentStatus,
    StatementPeriod,
    UserState,
)

NOW_US = 1_000_000_000
HOUR_US = 3_600_000_000


def cny(amount_minor):
    return Money("CNY", amount_minor)


def state_with(*events):
    state = UserState.empty("user-1")
    for event in events:
        apply(state, event)
    return state


def capacity(amount_minor):
    return CapacitySet(currency_code="CNY", capacity_minor=amount_minor, reason="")


def placed(hold_id, amount_minor, expires_at_us=NOW_US + HOUR_US):
    return HoldPlaced(
        hold_id=hold_id,
        currency_code="CNY",
        amount_minor=amount_minor,
        reference="",
        placed_at_us=NOW_US - 1,
        expires_at_us=expires_at_us,
    )


def place(amount_minor, currency_code="CNY"):
    return commands.PlaceHold("r", "user-1", Money(currency_code, amount_minor), HOUR_US)


def refusal_reason(call):
    with pytest.raises(FailedPrecondition) as refused:
        call()
    return refused.value.reason


class TestPlacingHolds:
    def test_a_hold_within_capacity_is_placed_and_expires_after_its_duration(self):
        state = state_with(capacity(1_000))

        events = rules.decide_place_hold(state, place(400), NOW_US, "hold-1")

        assert events == [
            HoldPlaced(
                "hold-1", "CNY", 400, "", placed_at_us=NOW_US, expires_at_us=NOW_US + HOUR_US
            )
        ]

    def test_open_holds_count_against_capacity(self):
        state = state_with(capacity(1_000), placed("a", 700))

        reason = refusal_reason(lambda: rules.decide_place_hold(state, place(301), NOW_US, "b"))

        assert reason == "INSUFFICIENT_CAPACITY"
        assert rules.decide_place_hold(state, place(300), NOW_US, "b")

    def test_holds_past_their_expiry_no_longer_count_even_before_the_sweep(self):
        state = state_with(capacity(1_000), placed("a", 700, expires_at_us=NOW_US))

        assert rules.needs_open_holds_for_place_hold(state, place(1_000))
        assert rules.decide_place_hold(state, place(1_000), NOW_US, "b")

    def test_without_capacity_or_in_another_currency_a_hold_is_refused(self):
        assert (
            refusal_reason(lambda: rules.decide_place_hold(state_with(), place(1), NOW_US, "a"))
            == "INSUFFICIENT_CAPACITY"
        )
        assert (
            refusal_reason(
                lambda: rules.decide_place_hold(
                    state_with(capacity(9)), place(1, "USD"), NOW_US, "a"
                )
            )
            == "CURRENCY_MISMATCH"
        )


class TestResolvingHolds:
    def test_a_partial_capture_releases_the_rest_and_may_create_an_obligation(self):
        state = state_with(capacity(1_000), placed("a", 700))
        command = commands.CaptureHold(
            "r", "a", cny(200), commands.ObligationTerms(NOW_US + 5, "fee")
        )

        events = rules.decide_capture_hold(state, command, NOW_US, "obligation-1")

        assert events == [
            HoldCaptured(
                "a",
                captured_minor=200,
                released_minor=500,
                obligation_id="obligation-1",
                captured_at_us=NOW_US,
            ),
            ObligationCreated("obligation-1", "CNY", 200, NOW_US + 5, "fee", "", "a", NOW_US),
        ]

    def test_capturing_more_than_held_is_invalid_whatever_the_state(self):
        state = state_with(capacity(1_000), placed("a", 700))

        with pytest.raises(InvalidArgument) as invalid:
            rules.decide_capture_hold(state, commands.CaptureHold("r", "a", cny(701)), NOW_US, "o")

        assert invalid.value.reason == "CAPTURE_EXCEEDS_HOLD"
        assert invalid.value.field_violations[0].field == "amount.amount_minor"

    def test_a_resolved_hold_cannot_be_resolved_again(self):
        state = state_with(
            capacity(1_000),
            placed("a", 700),
            HoldReleased("a", fulfilled=True, released_at_us=NOW_US),
        )

        for decide in (
            lambda: rules.decide_capture_hold(
                state, commands.CaptureHold("r", "a", cny(1)), NOW_US, "o"
            ),
            lambda: rules.decide_release_hold(state, commands.ReleaseHold("r", "a"), NOW_US),
        ):
            assert refusal_reason(decide) == "HOLD_ALREADY_RESOLVED"
        assert rules.decide_expire_hold(state, "a", NOW_US + 2 * HOUR_US) == []

    def test_an_expired_hold_cannot_be_captured_or_released_but_is_expired(self):
        state = state_with(capacity(1_000), placed("a", 700, expires_at_us=NOW_US))

        assert (
            refusal_reason(
                lambda: rules.decide_capture_hold(
                    state, commands.CaptureHold("r", "a", cny(1)), NOW_US, "o"
                )
            )
            == "HOLD_EXPIRED"
        )
        assert (
            refusal_reason(
                lambda: rules.decide_release_hold(state, commands.ReleaseHold("r", "a"), NOW_US)
            )
            == "HOLD_EXPIRED"
        )
        assert rules.decide_expire_hold(state, "a", NOW_US) == [HoldExpired("a", NOW_US)]

    def test_a_swept_hold_gives_the_same_reason_as_before_the_sweep(self):
        state = state_with(
            capacity(1_000),
            placed("a", 700, expires_at_us=NOW_US),
            HoldExpired("a", expired_at_us=NOW_US),
        )

        for decide in (
            lambda: rules.decide_capture_hold(
                state, commands.CaptureHold("r", "a", cny(1)), NOW_US, "o"
            ),
            lambda: rules.decide_release_hold(state, commands.ReleaseHold("r", "a"), NOW_US),
        ):
            assert refusal_reason(decide) == "HOLD_EXPIRED"
        assert rules.decide_expire_hold(state, "a", NOW_US - 1) == []


class TestObligations:
    def created(self, amount_minor=1_000):
        return ObligationCreated("o", "CNY", amount_minor, NOW_US + HOUR_US, "", "", "", NOW_US)

    def test_payments_never_exceed_what_is_due(self):
        state = state_with(self.created(), PaymentRecorded("o", 600, NOW_US))
        payment = commands.RecordPayment("r", "o", cny(401))

        assert (
            refusal_reason(lambda: rules.decide_record_payment(state, payment, NOW_US))
            == "PAYMENT_EXCEEDS_DUE"
        )
        events = rules.decide_record_payment(
            state, commands.RecordPayment("r", "o", cny(400)), NOW_US
        )
        assert events == [PaymentRecorded("o", 400, paid_at_us=NOW_US)]

    def test_on_time_and_late_need_full_payment_but_default_does_not(self):
        state = state_with(self.created(), PaymentRecorded("o", 999, NOW_US))

        for outcome, days_late in ((ObligationOutcome.ON_TIME, 0), (ObligationOutcome.LATE, 3)):
            close = commands.CloseObligation("r", "o", outcome, days_late)
            assert (
                refusal_reason(
                    lambda close=close: rules.decide_close_obligation(state, close, NOW_US)
                )
                == "OBLIGATION_NOT_PAID_IN_FULL"
            )
        default = commands.CloseObligation("r", "o", ObligationOutcome.DEFAULTED, closed_at_us=7)
        assert rules.decide_close_obligation(state, default, NOW_US) == [
            ObligationClosed("o", ObligationOutcome.DEFAULTED, 0, closed_at_us=7)
        ]

    def test_a_closed_obligation_takes_nothing_more(self):
        state = state_with(
            self.created(), ObligationClosed("o", ObligationOutcome.DEFAULTED, 0, NOW_US)
        )

        assert (
            refusal_reason(
                lambda: rules.decide_record_payment(
                    state, commands.RecordPayment("r", "o", cny(1)), NOW_US
                )
            )
            == "OBLIGATION_ALREADY_CLOSED"
        )

    def test_an_obligation_in_another_currency_than_the_account_is_refused(self):
        state = state_with(capacity(1_000))
        command = commands.CreateObligation("r", "user-1", Money("USD", 5), NOW_US)

        assert (
            refusal_reason(lambda: rules.decide_create_obligation(state, command, NOW_US, "o"))
            == "CURRENCY_MISMATCH"
        )


class TestReducingObligations:
    def created(self, amount_minor=1_000):
        return ObligationCreated("o", "CNY", amount_minor, NOW_US + HOUR_US, "", "", "", NOW_US)

    def reduce(self, amount_minor, currency_code="CNY", reason="discount"):
        return commands.ReduceObligation("r", "o", Money(currency_code, amount_minor), reason)

    def test_a_reduction_lowers_the_amount_due_and_outstanding_by_the_difference(self):
        state = state_with(self.created(), PaymentRecorded("o", 300, NOW_US))

        events = rules.decide_reduce_obligation(state, self.reduce(700), NOW_US)
        for event in events:
            apply(state, event)

        assert events == [ObligationReduced("o", 1_000, 700, "discount", reduced_at_us=NOW_US)]
        assert state.obligations["o"].amount_due_minor == 700
        assert state.obligations["o"].remaining_minor == 400
        assert state.account.outstanding_minor == 400

    def test_the_amount_due_never_goes_up_nor_stays_the_same(self):
        state = state_with(self.created())

        for amount_minor in (1_000, 1_001):
            assert (
                refusal_reason(
                    lambda amount_minor=amount_minor: rules.decide_reduce_obligation(
                        state, self.reduce(amount_minor), NOW_US
                    )
                )
                == "AMOUNT_DUE_NOT_LOWER"
            )

    def test_the_amount_due_never_goes_below_what_was_paid(self):
        state = state_with(self.created(), PaymentRecorded("o", 300, NOW_US))

        assert (
            refusal_reason(lambda: rules.decide_reduce_obligation(state, self.reduce(299), NOW_US))
            == "AMOUNT_DUE_BELOW_PAID"
        )

    def test_reduced_to_what_was_paid_the_obligation_closes_on_time(self):
        paid = state_with(self.created(), PaymentRecorded("o", 300, NOW_US))
        unpaid = state_with(self.created())

        for state, amount_minor in ((paid, 300), (unpaid, 0)):
            for event in rules.decide_reduce_obligation(state, self.reduce(amount_minor), NOW_US):
                apply(state, event)
            close = commands.CloseObligation("r", "o", ObligationOutcome.ON_TIME)
            for event in rules.decide_close_obligation(state, close, NOW_US):
                apply(state, event)

            assert state.account.outstanding_minor == 0
            assert state.account.outcomes.on_time == 1

    def test_a_closed_obligation_is_not_reduced(self):
        state = state_with(
            self.created(), ObligationClosed("o", ObligationOutcome.DEFAULTED, 0, NOW_US)
        )

        assert (
            refusal_reason(lambda: rules.decide_reduce_obligation(state, self.reduce(1), NOW_US))
            == "OBLIGATION_ALREADY_CLOSED"
        )

    def test_another_currency_is_invalid_whatever_the_state(self):
        closed = state_with(
            self.created(), ObligationClosed("o", ObligationOutcome.DEFAULTED, 0, NOW_US)
        )

        for state in (state_with(self.created()), closed):
            with pytest.raises(InvalidArgument) as invalid:
                rules.decide_reduce_obligation(state, self.reduce(1, "USD"), NOW_US)

            assert invalid.value.reason == "CURRENCY_MISMATCH"
            assert invalid.value.field_violations[0].field == "amount_due.currency_code"


class TestPartnerReports:
    def report(self, balance_minor, credit_line_minor=None):
        return commands.PartnerReport(
            "user-1",
            "bank",
            None if credit_line_minor is None else Money("TWD", credit_line_minor),
            (
                commands.StatementReport(
                    StatementPeriod(2005, 4),
                    Money("TWD", balance_minor),
                    Money("TWD", 0),
                    RepaymentStatus.NO_USE,
                ),
            ),
        )

    def test_an_identical_statement_is_unchanged_and_a_different_one_is_a_correction(self):
        events, first = rules.decide_partner_report(state_with(), self.report(100, 5_000))
        state = state_with(*events)

        same, unchanged = rules.decide_partner_report(state, self.report(100, 5_000))
        corrected, correction = rules.decide_partner_report(state, self.report(101))

        assert (first.statements_recorded, first.credit_line_recorded) == (1, True)
        assert same == []
        assert (unchanged.statements_unchanged, unchanged.credit_line_recorded) == (1, False)
        assert corrected == [
            StatementReported("bank", 2005, 4, "TWD", 101, 0, RepaymentStatus.NO_USE, 0)
        ]
        assert correction.statements_recorded == 1


def test_the_capacity_currency_changes_only_while_nothing_is_held_or_outstanding():
    held = state_with(capacity(1_000), placed("a", 1))
    command = commands.SetWaiverCapacity("r", "user-1", Money("USD", 5))

    assert (
        refusal_reason(lambda: rules.decide_set_waiver_capacity(held, command))
        == "CURRENCY_MISMATCH"
    )
    assert rules.decide_set_waiver_capacity(state_with(capacity(1_000)), command) == [
        CapacitySet("USD", 5, "")
    ]


@pytest.mark.parametrize(
    ("before", "asked", "journaled"),
    [
        ([], ConsentState.GRANTED, [ConsentGranted(NOW_US)]),
        ([ConsentGranted(1)], ConsentState.GRANTED, []),
        ([ConsentGranted(1)], ConsentState.WITHDRAWN, [ConsentWithdrawn(NOW_US)]),
        ([], ConsentState.WITHDRAWN, []),
        ([ConsentGranted(1), ConsentWithdrawn(2)], ConsentState.WITHDRAWN, []),
        ([ConsentGranted(1), ConsentWithdrawn(2)], ConsentState.GRANTED, [ConsentGranted(NOW_US)]),
    ],
    ids=[
        "granted",
        "granted again",
        "withdrawn",
        "withdrawn never granted",
        "withdrawn again",
        "granted after a withdrawal",
    ],
)
def test_consent_is_journaled_only_when_it_changes(before, asked, journaled):
    command = commands.RecordConsent("r-1", "user-1", asked)

    assert rules.decide_record_consent(state_with(*before), command, NOW_US) == journaled


def test_a_statement_is_attached_trimmed_to_a_defaulted_obligation_only():
    defaulted = state_with(
        ObligationCreated("o-1", "CNY", 300, 1, "fee", "", "", 1),
        ObligationClosed("o-1", ObligationOutcome.DEFAULTED, 0, 2),
    )
    open_one = state_with(ObligationCreated("o-1", "CNY", 300, 1, "fee", "", "", 1))
    command = commands.AttachStatement("r-1", "user-1", "o-1", "  my words ")

    assert rules.decide_attach_statement(defaulted, command, NOW_US) == [
        StatementAttached("o-1", "my words", NOW_US)
    ]
    with pytest.raises(FailedPrecondition) as refused:
        rules.decide_attach_statement(open_one, command, NOW_US)
    assert refused.value.reason == "RECORD_NOT_NEGATIVE"
