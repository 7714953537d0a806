"""Translation between the protobuf messages of sesame.ledger.v1 and the ledger's domain.

Requests become commands field by field (an unset message field becomes None, so validation can
say it is required). What only protobuf can get wrong (a timestamp out of range, a duration that
is not one, an enum number the contract does not define) is found here; such a field becomes
None too, and the request is then checked whole at once: its problems are reported together
with everything the request's validation finds, as one INVALID_ARGUMENT (see `RequestReader`).
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import duration_pb2, timestamp_pb2
from sesame.ledger.v1 import ledger_service_pb2 as pb
from sesame.type.v1 import money_pb2

from services.common.errors import FieldViolation, InvalidArgument
from services.common.money import Money
from services.common.validation import Violations
from services.ledger.domain import commands, events, reasons, validation
from services.ledger.domain.checkpoints import Checkpoint, CheckpointProof
from services.ledger.domain.records import (
    MICROSECONDS_PER_SECOND,
    ConsentState,
    CreditLine,
    Hold,
    HoldState,
    Obligation,
    ObligationOutcome,
    ObligationState,
    OutcomeCounts,
    RepaymentStatus,
    Statement,
    StatementPeriod,
)
from services.ledger.domain.results import (
    AccountSummary,
    ConsentStatus,
    CreditHistory,
    PartnerReportResult,
)
from services.ledger.domain.verification import ChainMismatch, MismatchKind, VerificationReport
from services.ledger.service.typed_entries import TypedEntry

# The range google.protobuf.Timestamp allows: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_TIMESTAMP_SECONDS_MIN = -62_135_596_800
_TIMESTAMP_SECONDS_MAX = 253_402_300_799
_NANOS_PER_MICROSECOND = 1000
_NANOS_PER_SECOND = 1_000_000_000
# The range google.protobuf.Duration allows: about 10,000 years either way.
_DURATION_SECONDS_MAX = 315_576_000_000

_HOLD_STATES = {
    HoldState.OPEN: pb.HOLD_STATE_OPEN,
    HoldState.CAPTURED: pb.HOLD_STATE_CAPTURED,
    HoldState.RELEASED: pb.HOLD_STATE_RELEASED,
    HoldState.EXPIRED: pb.HOLD_STATE_EXPIRED,
}
_OBLIGATION_STATES = {
    ObligationState.OPEN: pb.OBLIGATION_STATE_OPEN,
    ObligationState.CLOSED: pb.OBLIGATION_STATE_CLOSED,
}
_OUTCOMES = {
    ObligationOutcome.ON_TIME: pb.OBLIGATION_OUTCOME_ON_TIME,
    ObligationOutcome.LATE: pb.OBLIGATION_OUTCOME_LATE,
    ObligationOutcome.DEFAULTED: pb.OBLIGATION_OUTCOME_DEFAULTED,
}
_OUTCOMES_BY_NUMBER: dict[int, ObligationOutcome] = {
    number: outcome for outcome, number in _OUTCOMES.items()
}
_REPAYMENT_STATUSES = {
    RepaymentStatus.NO_USE: pb.REPAYMENT_STATUS_NO_USE,
    RepaymentStatus.PAID_IN_FULL: pb.REPAYMENT_STATUS_PAID_IN_FULL,
    RepaymentStatus.REVOLVING: pb.REPAYMENT_STATUS_REVOLVING,
    RepaymentStatus.LATE: pb.REPAYMENT_STATUS_LATE,
}
_REPAYMENT_STATUSES_BY_NUMBER: dict[int, RepaymentStatus] = {
    number: status for status, number in _REPAYMENT_STATUSES.items()
}
_CONSENT_STATES = {
    ConsentState.NOT_GIVEN: pb.CONSENT_STATE_NOT_GIVEN,
    ConsentState.GRANTED: pb.CONSENT_STATE_GRANTED,
    ConsentState.WITHDRAWN: pb.CONSENT_STATE_WITHDRAWN,
}
_CONSENT_STATES_BY_NUMBER: dict[int, ConsentState] = {
    number: state for state, number in _CONSENT_STATES.items()
}
EventMessage = (
    pb.CapacitySet
    | pb.HoldPlaced
    | pb.HoldCaptured
    | pb.HoldReleased
    | pb.HoldExpired
    | pb.ObligationCreated
    | pb.PaymentRecorded
    | pb.ObligationClosed
    | pb.ObligationReduced
    | pb.CreditLineReported
    | pb.StatementReported
    | pb.CheckpointSigned
    | pb.ConsentGranted
    | pb.ConsentWithdrawn
    | pb.StatementAttached
)
_MISMATCH_KINDS = {
    MismatchKind.HASH: pb.CHAIN_MISMATCH_KIND_HASH,
    MismatchKind.PREVIOUS_HASH: pb.CHAIN_MISMATCH_KIND_PREVIOUS_HASH,
    MismatchKind.SEQUENCE: pb.CHAIN_MISMATCH_KIND_SEQUENCE,
    MismatchKind.PROJECTION: pb.CHAIN_MISMATCH_KIND_PROJECTION,
    MismatchKind.REQUEST_RECORD: pb.CHAIN_MISMATCH_KIND_REQUEST_RECORD,
    MismatchKind.CHECKPOINT: pb.CHAIN_MISMATCH_KIND_CHECKPOINT,
}


# ----------------------------------------------------------------------------------------------
# Requests to commands


class RequestReader:
    """Reads request fields into domain values, keeping the problems of those it cannot read.

    A field that cannot be read is given to the command as unset. `finish` then reports every
    problem of the request at once: the unreadable fields' own, each where the request's
    validation (which sees the field unset and would call it required) names it, and the rest of
    what that validation finds. When every field was read, `finish` returns and leaves the
    validation to the service, so a valid request is checked once.
    """

    def __init__(self) -> None:
        self._unreadable: dict[str, FieldViolation] = {}

    def timestamp_us(self, field: str, timestamp: timestamp_pb2.Timestamp) -> int | None:
        in_range = _TIMESTAMP_SECONDS_MIN <= timestamp.seconds <= _TIMESTAMP_SECONDS_MAX
        if not in_range or not 0 <= timestamp.nanos < _NANOS_PER_SECOND:
            self._unread(field, reasons.TIMESTAMP_INVALID, "must be between years 1 and 9999 UTC")
            return None
        return (
            timestamp.seconds * MICROSECONDS_PER_SECOND + timestamp.nanos // _NANOS_PER_MICROSECOND
        )

    def duration_us(self, field: str, duration: duration_pb2.Duration) -> int | None:
        """Whole microseconds, finer parts dropped (towards zero, as the Duration's sign)."""
        seconds, nanos = duration.seconds, duration.nanos
        in_range = abs(seconds) <= _DURATION_SECONDS_MAX and abs(nanos) < _NANOS_PER_SECOND
        if not in_range or (seconds > 0 > nanos) or (seconds < 0 < nanos):
            self._unread(field, reasons.DURATION_INVALID, "is not a valid google.protobuf.Duration")
            return None
        microseconds = abs(nanos) // _NANOS_PER_MICROSECOND
        return seconds * MICROSECONDS_PER_SECOND + (microseconds if nanos >= 0 else -microseconds)

    def outcome(self, field: str, number: int) -> ObligationOutcome | None:
        if number == pb.OBLIGATION_OUTCOME_UNSPECIFIED:
            return None
        outcome = _OUTCOMES_BY_NUMBER.get(number)
        if outcome is None:
            self._unread(field, reasons.ENUM_VALUE_INVALID, f"{number} is not an outcome")
            return None
        return outcome

    def repayment_status(self, field: str, number: int) -> RepaymentStatus | None:
        if number == pb.REPAYMENT_STATUS_UNSPECIFIED:
            return None
        status = _REPAYMENT_STATUSES_BY_NUMBER.get(number)
        if status is None:
            self._unread(field, reasons.ENUM_VALUE_INVALID, f"{number} is not a repayment status")
            return None
        return status

    def consent_state(self, field: str, number: int) -> ConsentState | None:
        if number == pb.CONSENT_STATE_UNSPECIFIED:
            return None
        state = _CONSENT_STATES_BY_NUMBER.get(number)
        if state is None:
            self._unread(field, reasons.ENUM_VALUE_INVALID, f"{number} is not a consent state")
            return None
        return state

    def finish(self, check: Callable[[Violations], None]) -> None:
        """Raises every problem of the request when a field could not be read; `check` is the
        request's validation, run into the same violations."""
        if not self._unreadable:
            return
        violations = _ViolationsAfterReading(self._unreadable)
        check(violations)
        violations.raise_if_any()

    def _unread(self, field: str, reason: str, description: str) -> None:
        self._unreadable[field] = FieldViolation(field, description, reason)


class _ViolationsAfterReading(Violations):
    """The violations of a request some fields of which could not be read. Validation sees those
    fields unset: what it says of one is replaced by why it could not be read, and the fields it
    says nothing of (an optional time, say) are reported after everything it found."""

    def __init__(self, unreadable: dict[str, FieldViolation]) -> None:
        super().__init__()
        self._unreported = dict(unreadable)
        self._unreadable_fields = frozenset(unreadable)

    def add(self, field: str, reason: str, description: str) -> None:
        if field not in self._unreadable_fields:
            super().add(field, reason, description)
            return
        unreadable = self._unreported.pop(field, None)
        if unreadable is not None:
            super().add(unreadable.field, unreadable.reason, unreadable.description)

    def raise_if_any(self) -> None:
        for unreadable in self._unreported.values():
            super().add(unreadable.field, unreadable.reason, unreadable.description)
        self._unreported.clear()
        super().raise_if_any()


def _money(message: money_pb2.Money) -> Money:
    return Money(currency_code=message.currency_code, amount_minor=message.amount_minor)


def set_waiver_capacity_command(request: pb.SetWaiverCapacityRequest) -> commands.SetWaiverCapacity:
    return commands.SetWaiverCapacity(
        request_id=request.request_id,
        user_id=request.user_id,
        capacity=_money(request.capacity) if request.HasField("capacity") else None,
        reason=request.reason,
    )


def place_hold_command(request: pb.PlaceHoldRequest) -> commands.PlaceHold:
    reader = RequestReader()
    command = commands.PlaceHold(
        request_id=request.request_id,
        user_id=request.user_id,
        amount=_money(request.amount) if request.HasField("amount") else None,
        expires_in_us=(
            reader.duration_us("expires_in", request.expires_in)
            if request.HasField("expires_in")
            else None
        ),
        reference=request.reference,
    )
    reader.finish(lambda violations: validation.check_place_hold(violations, command))
    return command


def capture_hold_command(request: pb.CaptureHoldRequest) -> commands.CaptureHold:
    reader = RequestReader()
    terms = None
    if request.HasField("obligation"):
        due_at_us = (
            reader.timestamp_us("obligation.due_time", request.obligation.due_time)
            if request.obligation.HasField("due_time")
            else None
        )
        terms = commands.ObligationTerms(due_at_us=due_at_us, purpose=request.obligation.purpose)
    command = commands.CaptureHold(
        request_id=request.request_id,
        hold_id=request.hold_id,
        amount=_money(request.amount) if request.HasField("amount") else None,
        obligation=terms,
    )
    reader.finish(lambda violations: validation.check_capture_hold(violations, command))
    return command


def release_hold_command(request: pb.ReleaseHoldRequest) -> commands.ReleaseHold:
    return commands.ReleaseHold(
        request_id=request.request_id, hold_id=request.hold_id, fulfilled=request.fulfilled
    )


def create_obligation_command(request: pb.CreateObligationRequest) -> commands.CreateObligation:
    reader = RequestReader()
    command = commands.CreateObligation(
        request_id=request.request_id,
        user_id=request.user_id,
        amount_due=_money(request.amount_due) if request.HasField("amount_due") else None,
        due_at_us=(
            reader.timestamp_us("due_time", request.due_time)
            if request.HasField("due_time")
            else None
        ),
        purpose=request.purpose,
        reference=request.reference,
    )
    reader.finish(lambda violations: validation.check_create_obligation(violations, command))
    return command


def record_payment_command(request: pb.RecordPaymentRequest) -> commands.RecordPayment:
    reader = RequestReader()
    command = commands.RecordPayment(
        request_id=request.request_id,
        obligation_id=request.obligation_id,
        amount=_money(request.amount) if request.HasField("amount") else None,
        paid_at_us=(
            reader.timestamp_us("paid_time", request.paid_time)
            if request.HasField("paid_time")
            else None
        ),
    )
    reader.finish(lambda violations: validation.check_record_payment(violations, command))
    return command


def close_obligation_command(request: pb.CloseObligationRequest) -> commands.CloseObligation:
    reader = RequestReader()
    command = commands.CloseObligation(
        request_id=request.request_id,
        obligation_id=request.obligation_id,
        outcome=reader.outcome("outcome", request.outcome),
        days_late=request.days_late,
        closed_at_us=(
            reader.timestamp_us("close_time", request.close_time)
            if request.HasField("close_time")
            else None
        ),
    )
    reader.finish(lambda violations: validation.check_close_obligation(violations, command))
    return command


def reduce_obligation_command(request: pb.ReduceObligationRequest) -> commands.ReduceObligation:
    return commands.ReduceObligation(
        request_id=request.request_id,
        obligation_id=request.obligation_id,
        amount_due=_money(request.amount_due) if request.HasField("amount_due") else None,
        reason=request.reason,
    )


def record_partner_statements_command(
    request: pb.RecordPartnerStatementsRequest,
) -> commands.RecordPartnerStatements:
    reader = RequestReader()
    command = commands.RecordPartnerStatements(
        request_id=request.request_id,
        reports=tuple(
            _partner_report(reader, f"reports[{index}]", report)
            for index, report in enumerate(request.reports)
        ),
    )
    reader.finish(
        lambda violations: validation.check_record_partner_statements(violations, command)
    )
    return command


def _partner_report(
    reader: RequestReader, field: str, report: pb.PartnerReport
) -> commands.PartnerReport:
    return commands.PartnerReport(
        user_id=report.user_id,
        partner_id=report.partner_id,
        credit_line=_money(report.credit_line) if report.HasField("credit_line") else None,
        statements=tuple(
            _statement_report(reader, f"{field}.statements[{index}]", statement)
            for index, statement in enumerate(report.statements)
        ),
    )


def _statement_report(
    reader: RequestReader, field: str, statement: pb.Statement
) -> commands.StatementReport:
    period = (
        StatementPeriod(statement.period.year, statement.period.month)
        if statement.HasField("period")
        else None
    )
    return commands.StatementReport(
        period=period,
        balance=_money(statement.balance) if statement.HasField("balance") else None,
        amount_paid=_money(statement.amount_paid) if statement.HasField("amount_paid") else None,
        repayment_status=reader.repayment_status(
            f"{field}.repayment_status", statement.repayment_status
        ),
        months_late=statement.months_late,
    )


def record_consent_command(request: pb.RecordConsentRequest) -> commands.RecordConsent:
    reader = RequestReader()
    command = commands.RecordConsent(
        request_id=request.request_id,
        user_id=request.user_id,
        state=reader.consent_state("state", request.state),
    )
    reader.finish(lambda violations: validation.check_record_consent(violations, command))
    return command


def attach_statement_command(request: pb.AttachStatementRequest) -> commands.AttachStatement:
    return commands.AttachStatement(
        request_id=request.request_id,
        user_id=request.user_id,
        obligation_id=request.obligation_id,
        text=request.text,
    )


def verify_chain_checkpoint(request: pb.VerifyChainRequest) -> Checkpoint | None:
    """The request's checkpoint; an unreadable sign_time is CHECKPOINT_INVALID (the rest of its
    shape is the service's to check)."""
    if not request.HasField("checkpoint"):
        return None
    message = request.checkpoint
    reader = RequestReader()
    signed_at_us = reader.timestamp_us("checkpoint.sign_time", message.sign_time)
    if signed_at_us is None or not message.HasField("sign_time"):
        raise InvalidArgument.for_field(
            "checkpoint.sign_time",
            "must be set and between years 1 and 9999 UTC",
            reason=reasons.CHECKPOINT_INVALID,
        )
    return Checkpoint(
        checkpoint_sequence=message.checkpoint_sequence,
        global_sequence=message.global_sequence,
        user_count=message.user_count,
        merkle_root=message.merkle_root,
        signed_at_us=signed_at_us,
        key_id=message.key_id,
        signature=message.signature,
    )


def as_of_us(request: pb.GetCreditHistoryRequest) -> int | None:
    """The request's as_of_time; an unreadable one is reported with the request's other problems."""
    if not request.HasField("as_of_time"):
        return None
    reader = RequestReader()
    value = reader.timestamp_us("as_of_time", request.as_of_time)
    reader.finish(
        lambda violations: validation.check_credit_history_query(
            violations, request.user_id, request.max_statements
        )
    )
    return value


# ----------------------------------------------------------------------------------------------
# Domain to messages


def timestamp(value_us: int) -> timestamp_pb2.Timestamp:
    seconds, microseconds = divmod(value_us, MICROSECONDS_PER_SECOND)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=microseconds * _NANOS_PER_MICROSECOND)


def money(currency_code: str, amount_minor: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code=currency_code, amount_minor=amount_minor)


def hold_message(hold: Hold) -> pb.Hold:
    message = pb.Hold(
        hold_id=hold.hold_id,
        user_id=hold.user_id,
        amount=money(hold.currency_code, hold.amount_minor),
        state=_HOLD_STATES[hold.state],
        captured_amount=money(hold.currency_code, hold.captured_minor),
        reference=hold.reference,
        place_time=timestamp(hold.placed_at_us),
        expire_time=timestamp(hold.expires_at_us),
        obligation_id=hold.obligation_id,
        fulfilled=hold.fulfilled,
    )
    if hold.resolved_at_us is not None:
        message.resolve_time.CopyFrom(timestamp(hold.resolved_at_us))
    return message


def obligation_message(obligation: Obligation) -> pb.Obligation:
    message = pb.Obligation(
        obligation_id=obligation.obligation_id,
        user_id=obligation.user_id,
        amount_due=money(obligation.currency_code, obligation.amount_due_minor),
        amount_paid=money(obligation.currency_code, obligation.amount_paid_minor),
        due_time=timestamp(obligation.due_at_us),
        purpose=obligation.purpose,
        reference=obligation.reference,
        state=_OBLIGATION_STATES[obligation.state],
        days_late=obligation.days_late,
        create_time=timestamp(obligation.created_at_us),
        hold_id=obligation.hold_id,
    )
    if obligation.outcome is not None:
        message.outcome = _OUTCOMES[obligation.outcome]
    if obligation.closed_at_us is not None:
        message.close_time.CopyFrom(timestamp(obligation.closed_at_us))
    if obligation.attached_statement_at_us is not None:
        message.attached_statement.CopyFrom(
            _attached_statement_message(
                obligation.attached_statement, obligation.attached_statement_at_us
            )
        )
    return message


def _attached_statement_message(text: str, attached_at_us: int) -> pb.AttachedStatement:
    return pb.AttachedStatement(text=text, attach_time=timestamp(attached_at_us))


def consent_message(consent: ConsentStatus) -> pb.Consent:
    message = pb.Consent(state=_CONSENT_STATES[consent.state])
    if consent.since_us is not None:
        message.since_time.CopyFrom(timestamp(consent.since_us))
    return message


def account_summary_message(summary: AccountSummary) -> pb.AccountSummary:
    message = pb.AccountSummary(
        user_id=summary.user_id,
        open_hold_count=summary.open_hold_count,
        outcomes=_outcome_counts_message(summary.outcomes),
        last_user_sequence=summary.last_user_sequence,
        consent=consent_message(ConsentStatus(summary.consent, summary.consent_since_us)),
    )
    # An account that never had a currency has no amounts to report: the Money fields stay
    # unset, which reads as zero.
    if summary.currency_code:
        currency = summary.currency_code
        message.waiver_capacity.CopyFrom(money(currency, summary.waiver_capacity_minor))
        message.held.CopyFrom(money(currency, summary.held_minor))
        message.available.CopyFrom(money(currency, summary.available_minor))
        message.outstanding.CopyFrom(money(currency, summary.outstanding_minor))
    return message


def _outcome_counts_message(outcomes: OutcomeCounts) -> pb.OutcomeCounts:
    return pb.OutcomeCounts(
        on_time=outcomes.on_time,
        late_up_to_30_days=outcomes.late_up_to_30_days,
        late_over_30_days=outcomes.late_over_30_days,
        defaulted=outcomes.defaulted,
        fulfilled=outcomes.fulfilled,
    )


def statement_message(statement: Statement) -> pb.Statement:
    return pb.Statement(
        period=pb.StatementPeriod(year=statement.period.year, month=statement.period.month),
        balance=money(statement.currency_code, statement.balance_minor),
        amount_paid=money(statement.currency_code, statement.amount_paid_minor),
        repayment_status=_REPAYMENT_STATUSES[statement.repayment_status],
        months_late=statement.months_late,
    )


def partner_report_result_message(result: PartnerReportResult) -> pb.PartnerReportResult:
    return pb.PartnerReportResult(
        user_id=result.user_id,
        statements_recorded=result.statements_recorded,
        statements_unchanged=result.statements_unchanged,
        credit_line_recorded=result.credit_line_recorded,
    )


def credit_history_message(history: CreditHistory) -> pb.GetCreditHistoryResponse:
    message = pb.GetCreditHistoryResponse(
        user_id=history.user_id,
        statements=[statement_message(statement) for statement in history.statements],
        obligations=[obligation_message(obligation) for obligation in history.obligations],
        as_of_time=timestamp(history.as_of_us),
        last_user_sequence=history.last_user_sequence,
        last_global_sequence=history.last_global_sequence,
        consent=consent_message(history.consent),
    )
    if history.credit_line is not None:
        message.credit_line.CopyFrom(_credit_line_money(history.credit_line))
    return message


def _credit_line_money(credit_line: CreditLine) -> money_pb2.Money:
    return money(credit_line.currency_code, credit_line.amount_minor)


def entry_message(typed: TypedEntry) -> pb.Entry:
    entry = typed.entry
    message = pb.Entry(
        global_sequence=entry.global_sequence,
        user_id=entry.user_id,
        user_sequence=entry.user_sequence,
        type=pb.EntryType.Value(f"ENTRY_TYPE_{entry.entry_type}"),
        payload_json=entry.payload_json,
        request_id=entry.request_id,
        request_hash=entry.request_hash,
        previous_hash=entry.previous_hash,
        hash=entry.hash,
        record_time=timestamp(entry.recorded_at_us),
    )
    if typed.event is not None:
        # The oneof's cases are named after the entry types: ENTRY_TYPE_HOLD_PLACED is
        # `hold_placed`.
        case = getattr(message, typed.event.entry_type.value.lower())
        case.CopyFrom(event_message(typed.event, typed.currency_code))
    return message


def event_message(event: events.Event, currency_code: str) -> EventMessage:
    """The typed form of an event; `currency_code` is that of its amounts (see TypedEntry)."""
    match event:
        case events.CapacitySet():
            return pb.CapacitySet(
                capacity=money(event.currency_code, event.capacity_minor), reason=event.reason
            )
        case events.HoldPlaced():
            return pb.HoldPlaced(
                hold_id=event.hold_id,
                amount=money(event.currency_code, event.amount_minor),
                reference=event.reference,
                place_time=timestamp(event.placed_at_us),
                expire_time=timestamp(event.expires_at_us),
            )
        case events.HoldCaptured():
            return pb.HoldCaptured(
                hold_id=event.hold_id,
                captured_amount=money(currency_code, event.captured_minor),
                released_amount=money(currency_code, event.released_minor),
                obligation_id=event.obligation_id,
                capture_time=timestamp(event.captured_at_us),
            )
        case events.HoldReleased():
            return pb.HoldReleased(
                hold_id=event.hold_id,
                fulfilled=event.fulfilled,
                release_time=timestamp(event.released_at_us),
            )
        case events.HoldExpired():
            return pb.HoldExpired(hold_id=event.hold_id, expire_time=timestamp(event.expired_at_us))
        case events.ObligationCreated():
            return pb.ObligationCreated(
                obligation_id=event.obligation_id,
                amount_due=money(event.currency_code, event.amount_due_minor),
                due_time=timestamp(event.due_at_us),
                purpose=event.purpose,
                reference=event.reference,
                hold_id=event.hold_id,
                create_time=timestamp(event.created_at_us),
            )
        case events.PaymentRecorded():
            return pb.PaymentRecorded(
                obligation_id=event.obligation_id,
                amount=money(currency_code, event.amount_minor),
                paid_time=timestamp(event.paid_at_us),
            )
        case events.ObligationClosed():
            return pb.ObligationClosed(
                obligation_id=event.obligation_id,
                outcome=_OUTCOMES[event.outcome],
                days_late=event.days_late,
                close_time=timestamp(event.closed_at_us),
            )
        case events.ObligationReduced():
            return pb.ObligationReduced(
                obligation_id=event.obligation_id,
                previous_amount_due=money(currency_code, event.previous_amount_due_minor),
                amount_due=money(currency_code, event.amount_due_minor),
                reason=event.reason,
                reduce_time=timestamp(event.reduced_at_us),
            )
        case events.CreditLineReported():
            return pb.CreditLineReported(
                partner_id=event.partner_id,
                credit_line=money(event.currency_code, event.amount_minor),
            )
        case events.StatementReported():
            return pb.StatementReported(
                partner_id=event.partner_id,
                statement=pb.Statement(
                    period=pb.StatementPeriod(year=event.year, month=event.month),
                    balance=money(event.currency_code, event.balance_minor),
                    amount_paid=money(event.currency_code, event.amount_paid_minor),
                    repayment_status=_REPAYMENT_STATUSES[event.repayment_status],
                    months_late=event.months_late,
                ),
            )
        case events.ConsentGranted():
            return pb.ConsentGranted(grant_time=timestamp(event.granted_at_us))
        case events.ConsentWithdrawn():
            return pb.ConsentWithdrawn(withdraw_time=timestamp(event.withdrawn_at_us))
        case events.StatementAttached():
            return pb.StatementAttached(
                obligation_id=event.obligation_id,
                statement=_attached_statement_message(event.text, event.attached_at_us),
            )
        case events.CheckpointSigned():
            return pb.CheckpointSigned(
                checkpoint=checkpoint_message(
                    Checkpoint(
                        checkpoint_sequence=event.checkpoint_sequence,
                        global_sequence=event.global_sequence,
                        user_count=event.user_count,
                        merkle_root=event.merkle_root,
                        signed_at_us=event.signed_at_us,
                        key_id=event.key_id,
                        signature=event.signature,
                    )
                )
            )


def checkpoint_message(checkpoint: Checkpoint) -> pb.Checkpoint:
    return pb.Checkpoint(
        checkpoint_sequence=checkpoint.checkpoint_sequence,
        global_sequence=checkpoint.global_sequence,
        user_count=checkpoint.user_count,
        merkle_root=checkpoint.merkle_root,
        sign_time=timestamp(checkpoint.signed_at_us),
        key_id=checkpoint.key_id,
        signature=checkpoint.signature,
    )


def checkpoint_proof_message(proof: CheckpointProof) -> pb.GetCheckpointProofResponse:
    return pb.GetCheckpointProofResponse(
        checkpoint=checkpoint_message(proof.checkpoint),
        leaf=pb.ChainLeaf(
            user_id=proof.leaf.user_id,
            user_sequence=proof.leaf.user_sequence,
            hash=proof.leaf.head_hash,
        ),
        leaf_index=proof.leaf_index,
        tree_size=proof.tree_size,
        audit_path=list(proof.audit_path),
    )


def verification_message(report: VerificationReport) -> pb.VerifyChainResponse:
    message = pb.VerifyChainResponse(
        intact=report.intact,
        users_checked=report.users_checked,
        entries_checked=report.entries_checked,
    )
    if report.first_mismatch is not None:
        message.first_mismatch.CopyFrom(_mismatch_message(report.first_mismatch))
    return message


def _mismatch_message(mismatch: ChainMismatch) -> pb.ChainMismatch:
    return pb.ChainMismatch(
        kind=_MISMATCH_KINDS[mismatch.kind],
        user_id=mismatch.user_id,
        user_sequence=mismatch.user_sequence,
        global_sequence=mismatch.global_sequence,
        detail=mismatch.detail,
    )
