"""The projection: how each event changes a user's state.

`apply` is the one definition of what an event means. Live writes apply the events a rule
decided to the state they loaded, then store what changed; the verifier folds a user's whole
journal through the same function and compares the result with the stored projection.

`apply` refuses an event that does not fit the state (a capture of a hold that is not open, a
payment above what is due, a reduction below what was paid) with `ProjectionError`: on a live
write that is a bug in a rule, and in verification it is a finding about the journal.
"""

from __future__ import annotations

from dataclasses import replace

from services.ledger.domain.checkpoints import LEDGER_USER_ID
from services.ledger.domain.events import (
    CapacitySet,
    CheckpointSigned,
    ConsentGranted,
    ConsentWithdrawn,
    CreditLineReported,
    Event,
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
from services.ledger.domain.records import (
    LATE_SHORT_DAYS_MAX,
    ConsentState,
    CreditLine,
    Hold,
    HoldState,
    Obligation,
    ObligationOutcome,
    ObligationState,
    OutcomeCounts,
    Statement,
    UserState,
)


class ProjectionError(ValueError):
    """An event that cannot follow the state it is applied to."""


def apply(state: UserState, event: Event) -> None:
    """Changes `state` to what it is after `event`."""
    match event:
        case CapacitySet():
            _apply_capacity_set(state, event)
        case HoldPlaced():
            _apply_hold_placed(state, event)
        case HoldCaptured():
            _resolve_hold(state, event.hold_id, event.captured_at_us)
            hold = state.holds[event.hold_id]
            _require(
                event.captured_minor + event.released_minor == hold.amount_minor,
                "captured and released must add up to the hold",
            )
            state.holds[event.hold_id] = replace(
                hold,
                state=HoldState.CAPTURED,
                captured_minor=event.captured_minor,
                obligation_id=event.obligation_id,
            )
        case HoldReleased():
            _resolve_hold(state, event.hold_id, event.released_at_us)
            hold = state.holds[event.hold_id]
            state.holds[event.hold_id] = replace(
                hold, state=HoldState.RELEASED, fulfilled=event.fulfilled
            )
            if event.fulfilled:
                outcomes = state.account.outcomes
                _set_outcomes(state, replace(outcomes, fulfilled=outcomes.fulfilled + 1))
        case HoldExpired():
            _resolve_hold(state, event.hold_id, event.expired_at_us)
            hold = state.holds[event.hold_id]
            state.holds[event.hold_id] = replace(hold, state=HoldState.EXPIRED)
        case ObligationCreated():
            _apply_obligation_created(state, event)
        case PaymentRecorded():
            _apply_payment_recorded(state, event)
        case ObligationClosed():
            _apply_obligation_closed(state, event)
        case ObligationReduced():
            _apply_obligation_reduced(state, event)
        case CreditLineReported():
            state.credit_line = CreditLine(
                user_id=state.user_id,
                partner_id=event.partner_id,
                currency_code=event.currency_code,
                amount_minor=event.amount_minor,
            )
        case StatementReported():
            state.statements[event.period] = Statement(
                user_id=state.user_id,
                partner_id=event.partner_id,
                period=event.period,
                currency_code=event.currency_code,
                balance_minor=event.balance_minor,
                amount_paid_minor=event.amount_paid_minor,
                repayment_status=event.repayment_status,
                months_late=event.months_late,
            )
        case CheckpointSigned():
            # A checkpoint changes no projection; it belongs on the ledger's own chain only.
            _require(state.user_id == LEDGER_USER_ID, "a checkpoint is on the ledger's chain")
        case ConsentGranted():
            _require(
                state.account.consent is not ConsentState.GRANTED,
                "consent is granted only when it is not granted already",
            )
            state.account = replace(
                state.account, consent=ConsentState.GRANTED, consent_since_us=event.granted_at_us
            )
        case ConsentWithdrawn():
            _require(
                state.account.consent is ConsentState.GRANTED,
                "only consent granted is withdrawn",
            )
            state.account = replace(
                state.account,
                consent=ConsentState.WITHDRAWN,
                consent_since_us=event.withdrawn_at_us,
            )
        case StatementAttached():
            _apply_statement_attached(state, event)


def _apply_capacity_set(state: UserState, event: CapacitySet) -> None:
    account = state.account
    _require(event.capacity_minor >= 0, "capacity must not be negative")
    if account.currency_code not in ("", event.currency_code):
        _require(
            account.held_minor == 0 and account.outstanding_minor == 0,
            "the currency changes only while nothing is held or outstanding",
        )
    state.account = replace(
        account, currency_code=event.currency_code, waiver_capacity_minor=event.capacity_minor
    )


def _apply_hold_placed(state: UserState, event: HoldPlaced) -> None:
    account = state.account
    _require(event.hold_id not in state.holds, f"hold {event.hold_id} already exists")
    _require(event.amount_minor > 0, "a hold's amount must be positive")
    _require(event.currency_code == account.currency_code, "a hold is in the account's currency")
    _require(event.expires_at_us > event.placed_at_us, "a hold expires after it is placed")
    state.holds[event.hold_id] = Hold(
        hold_id=event.hold_id,
        user_id=state.user_id,
        currency_code=event.currency_code,
        amount_minor=event.amount_minor,
        state=HoldState.OPEN,
        reference=event.reference,
        placed_at_us=event.placed_at_us,
        expires_at_us=event.expires_at_us,
    )
    state.account = replace(
        account,
        held_minor=account.held_minor + event.amount_minor,
        open_hold_count=account.open_hold_count + 1,
    )


def _resolve_hold(state: UserState, hold_id: str, resolved_at_us: int) -> None:
    """What every resolution shares: the hold leaves OPEN once and stops using capacity."""
    hold = state.holds.get(hold_id)
    _require(hold is not None, f"hold {hold_id} is unknown")
    assert hold is not None
    _require(hold.state is HoldState.OPEN, f"hold {hold_id} is not open")
    account = state.account
    state.holds[hold_id] = replace(hold, resolved_at_us=resolved_at_us)
    state.account = replace(
        account,
        held_minor=account.held_minor - hold.amount_minor,
        open_hold_count=account.open_hold_count - 1,
    )
    _require(state.account.held_minor >= 0, "held must not go negative")


def _apply_obligation_created(state: UserState, event: ObligationCreated) -> None:
    account = state.account
    _require(
        event.obligation_id not in state.obligations,
        f"obligation {event.obligation_id} already exists",
    )
    _require(event.amount_due_minor > 0, "an obligation's amount must be positive")
    _require(
        account.currency_code in ("", event.currency_code),
        "an obligation is in the account's currency",
    )
    state.obligations[event.obligation_id] = Obligation(
        obligation_id=event.obligation_id,
        user_id=state.user_id,
        currency_code=event.currency_code,
        amount_due_minor=event.amount_due_minor,
        due_at_us=event.due_at_us,
        purpose=event.purpose,
        reference=event.reference,
        created_at_us=event.created_at_us,
        hold_id=event.hold_id,
    )
    state.account = replace(
        account,
        currency_code=event.currency_code,
        outstanding_minor=account.outstanding_minor + event.amount_due_minor,
    )


def _apply_payment_recorded(state: UserState, event: PaymentRecorded) -> None:
    obligation = _open_obligation(state, event.obligation_id)
    _require(
        0 < event.amount_minor <= obligation.remaining_minor,
        "a payment is positive and at most what is due",
    )
    state.obligations[event.obligation_id] = replace(
        obligation, amount_paid_minor=obligation.amount_paid_minor + event.amount_minor
    )
    account = state.account
    state.account = replace(
        account, outstanding_minor=account.outstanding_minor - event.amount_minor
    )


def _apply_obligation_closed(state: UserState, event: ObligationClosed) -> None:
    obligation = _open_obligation(state, event.obligation_id)
    if event.outcome is not ObligationOutcome.DEFAULTED:
        _require(obligation.remaining_minor == 0, "only a paid obligation closes on time or late")
    _require(
        (event.outcome is ObligationOutcome.LATE) == (event.days_late > 0),
        "days late are given exactly when the outcome is LATE",
    )
    state.obligations[event.obligation_id] = replace(
        obligation,
        state=ObligationState.CLOSED,
        outcome=event.outcome,
        days_late=event.days_late,
        closed_at_us=event.closed_at_us,
    )
    account = state.account
    state.account = replace(
        account, outstanding_minor=account.outstanding_minor - obligation.remaining_minor
    )
    _set_outcomes(state, _counted(account.outcomes, event))


def _apply_obligation_reduced(state: UserState, event: ObligationReduced) -> None:
    obligation = _open_obligation(state, event.obligation_id)
    _require(
        event.previous_amount_due_minor == obligation.amount_due_minor,
        "a reduction starts from the amount due",
    )
    _require(
        obligation.amount_paid_minor <= event.amount_due_minor < obligation.amount_due_minor,
        "a reduction lowers the amount due, never below what was paid",
    )
    state.obligations[event.obligation_id] = replace(
        obligation, amount_due_minor=event.amount_due_minor
    )
    # What is still due on the obligation drops by the reduction, and the account's outstanding
    # amount with it.
    reduction_minor = obligation.amount_due_minor - event.amount_due_minor
    account = state.account
    state.account = replace(account, outstanding_minor=account.outstanding_minor - reduction_minor)


def _apply_statement_attached(state: UserState, event: StatementAttached) -> None:
    obligation = state.obligations.get(event.obligation_id)
    _require(obligation is not None, f"obligation {event.obligation_id} is unknown")
    assert obligation is not None
    _require(
        obligation.is_negative_record,
        f"obligation {event.obligation_id} is no negative record (closed late or defaulted)",
    )
    _require(
        event.text == event.text.strip() and event.text != "",
        "a statement is trimmed and not empty",
    )
    state.obligations[event.obligation_id] = replace(
        obligation, attached_statement=event.text, attached_statement_at_us=event.attached_at_us
    )


def _counted(outcomes: OutcomeCounts, event: ObligationClosed) -> OutcomeCounts:
    match event.outcome:
        case ObligationOutcome.ON_TIME:
            return replace(outcomes, on_time=outcomes.on_time + 1)
        case ObligationOutcome.LATE if event.days_late <= LATE_SHORT_DAYS_MAX:
            return replace(outcomes, late_up_to_30_days=outcomes.late_up_to_30_days + 1)
        case ObligationOutcome.LATE:
            return replace(outcomes, late_over_30_days=outcomes.late_over_30_days + 1)
        case ObligationOutcome.DEFAULTED:
            return replace(outcomes, defaulted=outcomes.defaulted + 1)


def _open_obligation(state: UserState, obligation_id: str) -> Obligation:
    obligation = state.obligations.get(obligation_id)
    _require(obligation is not None, f"obligation {obligation_id} is unknown")
    assert obligation is not None
    _require(obligation.state is ObligationState.OPEN, f"obligation {obligation_id} is closed")
    return obligation


def _set_outcomes(state: UserState, outcomes: OutcomeCounts) -> None:
    state.account = replace(state.account, outcomes=outcomes)


def _require(condition: bool, description: str) -> None:
    if not condition:
        raise ProjectionError(description)
