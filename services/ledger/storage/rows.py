"""Conversions between table rows and domain records."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from services.ledger.domain.journal import JournalEntry, NewEntry
from services.ledger.domain.records import (
    Account,
    ChainHead,
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
from services.ledger.service.ports import RequestOutcome, StoredRequest

Values = dict[str, Any]


def account_values(account: Account, chain: ChainHead) -> Values:
    outcomes = account.outcomes
    return {
        "user_id": account.user_id,
        "currency_code": account.currency_code,
        "waiver_capacity_minor": account.waiver_capacity_minor,
        "held_minor": account.held_minor,
        "open_hold_count": account.open_hold_count,
        "outstanding_minor": account.outstanding_minor,
        "on_time_count": outcomes.on_time,
        "late_up_to_30_days_count": outcomes.late_up_to_30_days,
        "late_over_30_days_count": outcomes.late_over_30_days,
        "defaulted_count": outcomes.defaulted,
        "fulfilled_count": outcomes.fulfilled,
        "last_user_sequence": chain.user_sequence,
        "last_hash": chain.hash,
        "consent_state": account.consent.value,
        "consent_since_us": account.consent_since_us,
    }


def account_from(row: Row[Any]) -> tuple[Account, ChainHead]:
    account = Account(
        user_id=row.user_id,
        currency_code=row.currency_code,
        waiver_capacity_minor=row.waiver_capacity_minor,
        held_minor=row.held_minor,
        open_hold_count=row.open_hold_count,
        outstanding_minor=row.outstanding_minor,
        outcomes=OutcomeCounts(
            on_time=row.on_time_count,
            late_up_to_30_days=row.late_up_to_30_days_count,
            late_over_30_days=row.late_over_30_days_count,
            defaulted=row.defaulted_count,
            fulfilled=row.fulfilled_count,
        ),
        consent=ConsentState(row.consent_state),
        consent_since_us=row.consent_since_us,
    )
    return account, ChainHead(user_sequence=row.last_user_sequence, hash=row.last_hash)


def hold_values(hold: Hold) -> Values:
    return {
        "hold_id": hold.hold_id,
        "user_id": hold.user_id,
        "currency_code": hold.currency_code,
        "amount_minor": hold.amount_minor,
        "state": hold.state.value,
        "reference": hold.reference,
        "placed_at_us": hold.placed_at_us,
        "expires_at_us": hold.expires_at_us,
        "captured_minor": hold.captured_minor,
        "resolved_at_us": hold.resolved_at_us,
        "obligation_id": hold.obligation_id,
        "fulfilled": hold.fulfilled,
    }


def hold_from(row: Row[Any]) -> Hold:
    return Hold(
        hold_id=row.hold_id,
        user_id=row.user_id,
        currency_code=row.currency_code,
        amount_minor=row.amount_minor,
        state=HoldState(row.state),
        reference=row.reference,
        placed_at_us=row.placed_at_us,
        expires_at_us=row.expires_at_us,
        captured_minor=row.captured_minor,
        resolved_at_us=row.resolved_at_us,
        obligation_id=row.obligation_id,
        fulfilled=bool(row.fulfilled),
    )


def hold_resolution_values(hold: Hold) -> Values:
    return {
        "hold_id": hold.hold_id,
        "resolution": hold.state.value,
        "resolved_at_us": hold.resolved_at_us,
    }


def obligation_values(obligation: Obligation) -> Values:
    return {
        "obligation_id": obligation.obligation_id,
        "user_id": obligation.user_id,
        "currency_code": obligation.currency_code,
        "amount_due_minor": obligation.amount_due_minor,
        "amount_paid_minor": obligation.amount_paid_minor,
        "due_at_us": obligation.due_at_us,
        "purpose": obligation.purpose,
        "reference": obligation.reference,
        "created_at_us": obligation.created_at_us,
        "hold_id": obligation.hold_id,
        "state": obligation.state.value,
        "outcome": None if obligation.outcome is None else obligation.outcome.value,
        "days_late": obligation.days_late,
        "closed_at_us": obligation.closed_at_us,
        "attached_statement": obligation.attached_statement,
        "attached_statement_at_us": obligation.attached_statement_at_us,
    }


def obligation_from(row: Row[Any]) -> Obligation:
    return Obligation(
        obligation_id=row.obligation_id,
        user_id=row.user_id,
        currency_code=row.currency_code,
        amount_due_minor=row.amount_due_minor,
        amount_paid_minor=row.amount_paid_minor,
        due_at_us=row.due_at_us,
        purpose=row.purpose,
        reference=row.reference,
        created_at_us=row.created_at_us,
        hold_id=row.hold_id,
        state=ObligationState(row.state),
        outcome=None if row.outcome is None else ObligationOutcome(row.outcome),
        days_late=row.days_late,
        closed_at_us=row.closed_at_us,
        attached_statement=row.attached_statement,
        attached_statement_at_us=row.attached_statement_at_us,
    )


def statement_values(statement: Statement) -> Values:
    return {
        "user_id": statement.user_id,
        "year": statement.period.year,
        "month": statement.period.month,
        "partner_id": statement.partner_id,
        "currency_code": statement.currency_code,
        "balance_minor": statement.balance_minor,
        "amount_paid_minor": statement.amount_paid_minor,
        "repayment_status": statement.repayment_status.value,
        "months_late": statement.months_late,
        "period_end_us": statement.period.end_us,
    }


def statement_from(row: Row[Any]) -> Statement:
    return Statement(
        user_id=row.user_id,
        partner_id=row.partner_id,
        period=StatementPeriod(row.year, row.month),
        currency_code=row.currency_code,
        balance_minor=row.balance_minor,
        amount_paid_minor=row.amount_paid_minor,
        repayment_status=RepaymentStatus(row.repayment_status),
        months_late=row.months_late,
    )


def credit_line_values(credit_line: CreditLine) -> Values:
    return {
        "user_id": credit_line.user_id,
        "partner_id": credit_line.partner_id,
        "currency_code": credit_line.currency_code,
        "amount_minor": credit_line.amount_minor,
    }


def credit_line_from(row: Row[Any]) -> CreditLine:
    return CreditLine(
        user_id=row.user_id,
        partner_id=row.partner_id,
        currency_code=row.currency_code,
        amount_minor=row.amount_minor,
    )


def entry_values(entry: NewEntry, global_sequence: int) -> Values:
    return {
        "global_sequence": global_sequence,
        "user_id": entry.user_id,
        "user_sequence": entry.user_sequence,
        "entry_type": entry.entry_type,
        "payload_json": entry.payload_json,
        "request_id": entry.request_id,
        "request_hash": entry.request_hash,
        "previous_hash": entry.previous_hash,
        "hash": entry.hash,
        "recorded_at_us": entry.recorded_at_us,
    }


def entry_from(row: Row[Any]) -> JournalEntry:
    return JournalEntry(
        global_sequence=row.global_sequence,
        user_id=row.user_id,
        user_sequence=row.user_sequence,
        entry_type=row.entry_type,
        payload_json=row.payload_json,
        request_id=row.request_id,
        request_hash=row.request_hash,
        previous_hash=row.previous_hash,
        hash=row.hash,
        recorded_at_us=row.recorded_at_us,
    )


def request_values(request: StoredRequest) -> Values:
    return {
        "request_id": request.request_id,
        "request_hash": request.request_hash,
        "method": request.method,
        "outcome": request.outcome.value,
        "response_json": request.response_json,
        "error_reason": request.error_reason,
        "error_message": request.error_message,
        "recorded_at_us": request.recorded_at_us,
        "entry_count": request.entry_count,
    }


def request_from(row: Row[Any]) -> StoredRequest:
    return StoredRequest(
        request_id=row.request_id,
        request_hash=row.request_hash,
        method=row.method,
        outcome=RequestOutcome(row.outcome),
        response_json=row.response_json,
        error_reason=row.error_reason,
        error_message=row.error_message,
        recorded_at_us=row.recorded_at_us,
        entry_count=row.entry_count,
    )
