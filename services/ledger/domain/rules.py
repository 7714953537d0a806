"""The ledger's rules: given a user's state, a command and the time, which events happen.

Each rule is a pure function that either returns the events to journal or raises a SesameError
with a stable reason. Rules assume the command passed validation and that the state holds what
the rule reads (the hold being captured, ...); the service layer loads it.

Error kinds follow one principle: what is wrong whatever the state (capturing more than a hold's
amount, which never changes) is INVALID_ARGUMENT and never stored; what depends on the state
(the hold was already released) is FAILED_PRECONDITION and stored, so a retry gets the same
answer even after the state has moved on.
"""

from __future__ import annotations

from typing import TypeVar

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.money import Money
from services.ledger.domain import commands, reasons
from services.ledger.domain.events import (
    CapacitySet,
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
    ConsentState,
    CreditLine,
    Hold,
    HoldState,
    Obligation,
    ObligationOutcome,
    ObligationState,
    Statement,
    UserState,
)
from services.ledger.domain.results import PartnerReportResult

T = TypeVar("T")


def decide_set_waiver_capacity(
    state: UserState, command: commands.SetWaiverCapacity
) -> list[Event]:
    capacity = _given(command.capacity)
    account = state.account
    # Held and outstanding amounts are in the account's currency; switching it under them
    # would mix currencies in one sum.
    currency_changes = account.currency_code not in ("", capacity.currency_code)
    if currency_changes and (account.held_minor > 0 or account.outstanding_minor > 0):
        raise FailedPrecondition(
            "the capacity's currency can change only while nothing is held or outstanding",
            reason=reasons.CURRENCY_MISMATCH,
        )
    return [
        CapacitySet(
            currency_code=capacity.currency_code,
            capacity_minor=capacity.amount_minor,
            reason=command.reason,
        )
    ]


def needs_open_holds_for_place_hold(state: UserState, command: commands.PlaceHold) -> bool:
    """Whether `decide_place_hold` needs every open hold of the user in `state.holds`.

    The account's `held_minor` counts every open hold, expired or not, so it is an upper bound of
    what is really held; when capacity suffices even against it, the holds need not be read.
    """
    amount = _given(command.amount)
    account = state.account
    return amount.amount_minor > account.waiver_capacity_minor - account.held_minor


def decide_place_hold(
    state: UserState, command: commands.PlaceHold, now_us: int, new_hold_id: str
) -> list[Event]:
    amount = _given(command.amount)
    expires_in_us = _given(command.expires_in_us)
    account = state.account
    if account.currency_code == "":
        raise FailedPrecondition("no waiver capacity is set", reason=reasons.INSUFFICIENT_CAPACITY)
    if amount.currency_code != account.currency_code:
        raise FailedPrecondition(
            "the hold's currency differs from the capacity's", reason=reasons.CURRENCY_MISMATCH
        )
    if needs_open_holds_for_place_hold(state, command):
        available_minor = account.waiver_capacity_minor - held_unexpired_minor(state, now_us)
        if amount.amount_minor > available_minor:
            raise FailedPrecondition(
                "the hold exceeds the available waiver capacity",
                reason=reasons.INSUFFICIENT_CAPACITY,
            )
    return [
        HoldPlaced(
            hold_id=new_hold_id,
            currency_code=amount.currency_code,
            amount_minor=amount.amount_minor,
            reference=command.reference,
            placed_at_us=now_us,
            expires_at_us=now_us + expires_in_us,
        )
    ]


def held_unexpired_minor(state: UserState, now_us: int) -> int:
    """The total of open holds not expired at `now_us`; `state.holds` must hold every open hold."""
    open_holds = [hold for hold in state.holds.values() if hold.state is HoldState.OPEN]
    assert len(open_holds) == state.account.open_hold_count, "every open hold must be loaded"
    assert sum(hold.amount_minor for hold in open_holds) == state.account.held_minor
    return sum(hold.amount_minor for hold in open_holds if hold.is_open_at(now_us))


def decide_capture_hold(
    state: UserState, command: commands.CaptureHold, now_us: int, new_obligation_id: str
) -> list[Event]:
    hold = state.holds[command.hold_id]
    amount = _given(command.amount)
    _require_hold_currency(hold, amount)
    if amount.amount_minor > hold.amount_minor:
        raise InvalidArgument.for_field(
            "amount.amount_minor",
            "must not exceed the amount held",
            reason=reasons.CAPTURE_EXCEEDS_HOLD,
        )
    _require_open(hold, now_us)
    terms = command.obligation
    obligation_id = new_obligation_id if terms is not None else ""
    events: list[Event] = [
        HoldCaptured(
            hold_id=hold.hold_id,
            captured_minor=amount.amount_minor,
            released_minor=hold.amount_minor - amount.amount_minor,
            obligation_id=obligation_id,
            captured_at_us=now_us,
        )
    ]
    if terms is not None:
        events.append(
            ObligationCreated(
                obligation_id=obligation_id,
                currency_code=hold.currency_code,
                amount_due_minor=amount.amount_minor,
                due_at_us=_given(terms.due_at_us),
                purpose=terms.purpose,
                reference=hold.reference,
                hold_id=hold.hold_id,
                created_at_us=now_us,
            )
        )
    return events


def decide_release_hold(
    state: UserState, command: commands.ReleaseHold, now_us: int
) -> list[Event]:
    hold = state.holds[command.hold_id]
    _require_open(hold, now_us)
    return [HoldReleased(hold_id=hold.hold_id, fulfilled=command.fulfilled, released_at_us=now_us)]


def decide_expire_hold(state: UserState, hold_id: str, now_us: int) -> list[Event]:
    """Expires the hold if it is still open and past its expiry; nothing otherwise (another
    sweeper or a capture may have resolved it since it was listed)."""
    hold = state.holds[hold_id]
    if hold.state is not HoldState.OPEN or now_us < hold.expires_at_us:
        return []
    return [HoldExpired(hold_id=hold_id, expired_at_us=hold.expires_at_us)]


def decide_create_obligation(
    state: UserState, command: commands.CreateObligation, now_us: int, new_obligation_id: str
) -> list[Event]:
    amount_due = _given(command.amount_due)
    account_currency = state.account.currency_code
    if account_currency not in ("", amount_due.currency_code):
        raise FailedPrecondition(
            "the obligation's currency differs from the account's",
            reason=reasons.CURRENCY_MISMATCH,
        )
    return [
        ObligationCreated(
            obligation_id=new_obligation_id,
            currency_code=amount_due.currency_code,
            amount_due_minor=amount_due.amount_minor,
            due_at_us=_given(command.due_at_us),
            purpose=command.purpose,
            reference=command.reference,
            hold_id="",
            created_at_us=now_us,
        )
    ]


def decide_record_payment(
    state: UserState, command: commands.RecordPayment, now_us: int
) -> list[Event]:
    obligation = state.obligations[command.obligation_id]
    amount = _given(command.amount)
    if amount.currency_code != obligation.currency_code:
        raise InvalidArgument.for_field(
            "amount.currency_code",
            "must be the obligation's currency",
            reason=reasons.CURRENCY_MISMATCH,
        )
    _require_obligation_open(obligation)
    if amount.amount_minor > obligation.remaining_minor:
        raise FailedPrecondition(
            "the payment exceeds what is still due", reason=reasons.PAYMENT_EXCEEDS_DUE
        )
    paid_at_us = now_us if command.paid_at_us is None else command.paid_at_us
    return [
        PaymentRecorded(
            obligation_id=obligation.obligation_id,
            amount_minor=amount.amount_minor,
            paid_at_us=paid_at_us,
        )
    ]


def decide_close_obligation(
    state: UserState, command: commands.CloseObligation, now_us: int
) -> list[Event]:
    obligation = state.obligations[command.obligation_id]
    outcome = _given(command.outcome)
    _require_obligation_open(obligation)
    if outcome is not ObligationOutcome.DEFAULTED and obligation.remaining_minor > 0:
        raise FailedPrecondition(
            "an obligation closes on time or late only once paid in full",
            reason=reasons.OBLIGATION_NOT_PAID_IN_FULL,
        )
    closed_at_us = now_us if command.closed_at_us is None else command.closed_at_us
    return [
        ObligationClosed(
            obligation_id=obligation.obligation_id,
            outcome=outcome,
            days_late=command.days_late,
            closed_at_us=closed_at_us,
        )
    ]


def decide_reduce_obligation(
    state: UserState, command: commands.ReduceObligation, now_us: int
) -> list[Event]:
    """Lowers the amount due, never below what was paid: an obligation reduced to exactly what
    was paid (zero when nothing was) is paid in full and may then close on time or late."""
    obligation = state.obligations[command.obligation_id]
    amount_due = _given(command.amount_due)
    if amount_due.currency_code != obligation.currency_code:
        raise InvalidArgument.for_field(
            "amount_due.currency_code",
            "must be the obligation's currency",
            reason=reasons.CURRENCY_MISMATCH,
        )
    _require_obligation_open(obligation)
    if amount_due.amount_minor >= obligation.amount_due_minor:
        raise FailedPrecondition(
            "the new amount due must be below the current one",
            reason=reasons.AMOUNT_DUE_NOT_LOWER,
        )
    if amount_due.amount_minor < obligation.amount_paid_minor:
        raise FailedPrecondition(
            "the new amount due must not be below what was already paid",
            reason=reasons.AMOUNT_DUE_BELOW_PAID,
        )
    return [
        ObligationReduced(
            obligation_id=obligation.obligation_id,
            previous_amount_due_minor=obligation.amount_due_minor,
            amount_due_minor=amount_due.amount_minor,
            reason=command.reason,
            reduced_at_us=now_us,
        )
    ]


def decide_record_consent(
    state: UserState, command: commands.RecordConsent, now_us: int
) -> list[Event]:
    """Grants or withdraws consent. Asking for the state that holds already journals nothing:
    consent granted twice began with the first grant, and consent never granted (or withdrawn
    already) has nothing to withdraw."""
    wanted = _given(command.state)
    current = state.account.consent
    if wanted is ConsentState.GRANTED and current is not ConsentState.GRANTED:
        return [ConsentGranted(granted_at_us=now_us)]
    if wanted is ConsentState.WITHDRAWN and current is ConsentState.GRANTED:
        return [ConsentWithdrawn(withdrawn_at_us=now_us)]
    return []


def decide_attach_statement(
    state: UserState, command: commands.AttachStatement, now_us: int
) -> list[Event]:
    """Attaches the user's statement to a negative record of theirs; the service layer has made
    sure the obligation is the user's."""
    obligation = state.obligations[command.obligation_id]
    if not obligation.is_negative_record:
        raise FailedPrecondition(
            "a statement is attached only to an obligation closed late or defaulted",
            reason=reasons.RECORD_NOT_NEGATIVE,
        )
    return [
        StatementAttached(
            obligation_id=obligation.obligation_id,
            text=command.text.strip(),
            attached_at_us=now_us,
        )
    ]


def require_partner_currency(state: UserState, report: commands.PartnerReport, field: str) -> None:
    """A user's partner data (credit line and statements) stay in one currency: that of the
    first recorded. The score compares every statement's balance with the credit line and with
    the other statements, and refuses a history in several currencies; one mixed report would
    leave the user unscoreable. The account's own currency (capacity, holds, obligations) is
    another matter: partner data may be in another (the Taiwan data set's statements are in TWD
    for users whose deposits are waived in CNY)."""
    recorded = partner_currency(state)
    reported = _report_currency(report)
    if recorded is not None and reported is not None and reported != recorded:
        raise FailedPrecondition(
            f"{field}: user {state.user_id}'s partner data is recorded in {recorded},"
            f" not {reported}",
            reason=reasons.CURRENCY_MISMATCH,
        )


def partner_currency(state: UserState) -> str | None:
    """The currency of the user's recorded partner data; None when nothing is recorded."""
    if state.credit_line is not None:
        return state.credit_line.currency_code
    statement = next(iter(state.statements.values()), None)
    return None if statement is None else statement.currency_code


def _report_currency(report: commands.PartnerReport) -> str | None:
    # Validation made every amount of a report one currency.
    if report.credit_line is not None:
        return report.credit_line.currency_code
    if not report.statements:
        return None
    return _given(report.statements[0].balance).currency_code


def decide_partner_report(
    state: UserState, report: commands.PartnerReport
) -> tuple[list[Event], PartnerReportResult]:
    """A report changes only what differs from what is recorded: an identical statement is
    counted as unchanged and journals nothing; a different one is journaled as a correction."""
    events: list[Event] = []
    credit_line_recorded = False
    if report.credit_line is not None:
        credit_line = CreditLine(
            user_id=state.user_id,
            partner_id=report.partner_id,
            currency_code=report.credit_line.currency_code,
            amount_minor=report.credit_line.amount_minor,
        )
        if state.credit_line != credit_line:
            events.append(
                CreditLineReported(
                    partner_id=credit_line.partner_id,
                    currency_code=credit_line.currency_code,
                    amount_minor=credit_line.amount_minor,
                )
            )
            credit_line_recorded = True
    statements_unchanged = 0
    for statement_report in report.statements:
        statement = _statement(state.user_id, report.partner_id, statement_report)
        if state.statements.get(statement.period) == statement:
            statements_unchanged += 1
        else:
            events.append(
                StatementReported(
                    partner_id=statement.partner_id,
                    year=statement.period.year,
                    month=statement.period.month,
                    currency_code=statement.currency_code,
                    balance_minor=statement.balance_minor,
                    amount_paid_minor=statement.amount_paid_minor,
                    repayment_status=statement.repayment_status,
                    months_late=statement.months_late,
                )
            )
    result = PartnerReportResult(
        user_id=state.user_id,
        statements_recorded=len(report.statements) - statements_unchanged,
        statements_unchanged=statements_unchanged,
        credit_line_recorded=credit_line_recorded,
    )
    return events, result


def _statement(user_id: str, partner_id: str, report: commands.StatementReport) -> Statement:
    balance = _given(report.balance)
    return Statement(
        user_id=user_id,
        partner_id=partner_id,
        period=_given(report.period),
        currency_code=balance.currency_code,
        balance_minor=balance.amount_minor,
        amount_paid_minor=_given(report.amount_paid).amount_minor,
        repayment_status=_given(report.repayment_status),
        months_late=report.months_late,
    )


def _require_hold_currency(hold: Hold, amount: Money) -> None:
    if amount.currency_code != hold.currency_code:
        raise InvalidArgument.for_field(
            "amount.currency_code", "must be the hold's currency", reason=reasons.CURRENCY_MISMATCH
        )


def _require_open(hold: Hold, now_us: int) -> None:
    # An expired hold answers HOLD_EXPIRED whether or not the sweeper has journaled it yet: a
    # caller sees the same reason for the same hold at any time.
    if hold.state is HoldState.EXPIRED or (
        hold.state is HoldState.OPEN and now_us >= hold.expires_at_us
    ):
        raise FailedPrecondition("the hold has expired", reason=reasons.HOLD_EXPIRED)
    if hold.state is not HoldState.OPEN:
        raise FailedPrecondition(
            "the hold was already resolved", reason=reasons.HOLD_ALREADY_RESOLVED
        )


def _require_obligation_open(obligation: Obligation) -> None:
    if obligation.state is not ObligationState.OPEN:
        raise FailedPrecondition(
            "the obligation is already closed", reason=reasons.OBLIGATION_ALREADY_CLOSED
        )


def _given(value: T | None) -> T:
    # Validation guarantees required fields are present before any rule runs.
    assert value is not None, "validation lets no required field through unset"
    return value
