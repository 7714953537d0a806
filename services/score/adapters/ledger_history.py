"""The ledger's GetCreditHistory answer as the score domain's `CreditHistory`.

This is the mapping serving uses, and training reaches it too: a row of the Taiwan data set is
turned into the answer the ledger would give for it (`services.datasets.taiwan`) and then
mapped here, so the features of a training row and of a live user are computed from the same
kind of value by the same code.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC

from sesame.ledger.v1 import ledger_service_pb2

from services.score.domain.history import (
    CreditHistory,
    ObligationOutcome,
    ObligationRecord,
    RepaymentStatus,
    StatementRecord,
)

# The ledger returns at most 24 statements and 100 obligations; anything beyond is not a ledger
# answer and is refused rather than read.
STATEMENTS_MAX = 24
OBLIGATIONS_MAX = 100

_STATUS_BY_PROTO = {
    ledger_service_pb2.REPAYMENT_STATUS_NO_USE: RepaymentStatus.NO_USE,
    ledger_service_pb2.REPAYMENT_STATUS_PAID_IN_FULL: RepaymentStatus.PAID_IN_FULL,
    ledger_service_pb2.REPAYMENT_STATUS_REVOLVING: RepaymentStatus.REVOLVING,
    ledger_service_pb2.REPAYMENT_STATUS_LATE: RepaymentStatus.LATE,
}
_OUTCOME_BY_PROTO = {
    ledger_service_pb2.OBLIGATION_OUTCOME_UNSPECIFIED: ObligationOutcome.OPEN,
    ledger_service_pb2.OBLIGATION_OUTCOME_ON_TIME: ObligationOutcome.ON_TIME,
    ledger_service_pb2.OBLIGATION_OUTCOME_LATE: ObligationOutcome.LATE,
    ledger_service_pb2.OBLIGATION_OUTCOME_DEFAULTED: ObligationOutcome.DEFAULTED,
}


class LedgerHistoryError(ValueError):
    """The ledger's answer breaks its own contract, so no score can be computed from it."""


def credit_history_from_proto(
    response: ledger_service_pb2.GetCreditHistoryResponse,
) -> CreditHistory:
    """The domain's view of a GetCreditHistory answer.

    Statements are put newest first. The ledger keeps one statement per month (a second report
    for a month, from any partner, replaces the first), so a month that appears twice breaks the
    contract and is refused rather than guessed at. The credit line and the statements must be in
    one currency, because the features compare them with each other. Obligations are in the
    account's own currency, which may be another than a partner's; their amounts are read as
    they are (the model card names this among its limitations).
    """
    if len(response.statements) > STATEMENTS_MAX:
        raise LedgerHistoryError(f"{len(response.statements)} statements, at most 24 expected")
    if len(response.obligations) > OBLIGATIONS_MAX:
        raise LedgerHistoryError(f"{len(response.obligations)} obligations, at most 100 expected")
    _check_one_currency(response)
    credit_line_minor = (
        response.credit_line.amount_minor if response.HasField("credit_line") else None
    )
    statements = _newest_first(_statement(statement) for statement in response.statements)
    return CreditHistory(
        credit_line_minor=credit_line_minor,
        statements=statements,
        obligations=tuple(_obligation(obligation) for obligation in response.obligations),
        as_of=response.as_of_time.ToDatetime(tzinfo=UTC)
        if response.HasField("as_of_time")
        else None,
    )


def _check_one_currency(response: ledger_service_pb2.GetCreditHistoryResponse) -> None:
    currencies = {
        statement_money.currency_code
        for statement in response.statements
        for statement_money in (statement.balance, statement.amount_paid)
    }
    if response.HasField("credit_line"):
        currencies.add(response.credit_line.currency_code)
    if len(currencies) > 1:
        raise LedgerHistoryError(f"amounts in several currencies: {sorted(currencies)}")


def _statement(statement: ledger_service_pb2.Statement) -> StatementRecord:
    status = _STATUS_BY_PROTO.get(statement.repayment_status)
    if status is None:
        raise LedgerHistoryError(
            f"statement {statement.period.year}-{statement.period.month:02d}"
            " has no repayment status"
        )
    try:
        return StatementRecord(
            year=statement.period.year,
            month=statement.period.month,
            balance_minor=statement.balance.amount_minor,
            amount_paid_minor=statement.amount_paid.amount_minor,
            repayment_status=status,
            months_late=statement.months_late,
        )
    except ValueError as error:
        raise LedgerHistoryError(str(error)) from error


def _newest_first(statements: Iterable[StatementRecord]) -> tuple[StatementRecord, ...]:
    by_period: dict[tuple[int, int], StatementRecord] = {}
    for statement in statements:
        key = (statement.year, statement.month)
        if key in by_period:
            raise LedgerHistoryError(f"the statement for {key[0]}-{key[1]:02d} appears twice")
        by_period[key] = statement
    return tuple(by_period[key] for key in sorted(by_period, reverse=True))


def _obligation(obligation: ledger_service_pb2.Obligation) -> ObligationRecord:
    outcome = _OUTCOME_BY_PROTO.get(obligation.outcome)
    if outcome is None:
        raise LedgerHistoryError(f"obligation {obligation.obligation_id!r} has an unknown outcome")
    if obligation.state == ledger_service_pb2.OBLIGATION_STATE_CLOSED and (
        outcome is ObligationOutcome.OPEN
    ):
        raise LedgerHistoryError(
            f"obligation {obligation.obligation_id!r} is closed without outcome"
        )
    try:
        return ObligationRecord(
            amount_due_minor=obligation.amount_due.amount_minor,
            amount_paid_minor=obligation.amount_paid.amount_minor,
            due_at=obligation.due_time.ToDatetime(tzinfo=UTC)
            if obligation.HasField("due_time")
            else None,
            outcome=outcome,
            days_late=obligation.days_late,
        )
    except ValueError as error:
        raise LedgerHistoryError(f"obligation {obligation.obligation_id!r}: {error}") from error
