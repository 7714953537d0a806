"""The ledger's GetCreditHistory answer becomes the score domain's CreditHistory."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sesame.ledger.v1 import ledger_service_pb2 as ledger
from sesame.type.v1.money_pb2 import Money

from services.score.adapters.ledger_history import LedgerHistoryError, credit_history_from_proto
from services.score.domain.history import ObligationOutcome, RepaymentStatus, StatementRecord


def cny(amount_minor: int) -> Money:
    return Money(currency_code="CNY", amount_minor=amount_minor)


def statement(
    year: int,
    month: int,
    balance: int,
    paid: int,
    status: ledger.RepaymentStatus.ValueType = ledger.REPAYMENT_STATUS_REVOLVING,
    months_late: int = 0,
    currency: str = "CNY",
) -> ledger.Statement:
    return ledger.Statement(
        period=ledger.StatementPeriod(year=year, month=month),
        balance=Money(currency_code=currency, amount_minor=balance),
        amount_paid=Money(currency_code=currency, amount_minor=paid),
        repayment_status=status,
        months_late=months_late,
    )


def test_credit_line_statements_obligations_and_as_of_are_mapped() -> None:
    response = ledger.GetCreditHistoryResponse(
        user_id="u-1",
        credit_line=cny(800_000),
        statements=[
            statement(2026, 10, 120_000, 5_000, ledger.REPAYMENT_STATUS_LATE, 2),
            statement(2026, 9, 100_000, 100_000, ledger.REPAYMENT_STATUS_PAID_IN_FULL),
        ],
        obligations=[
            ledger.Obligation(
                obligation_id="o-1",
                amount_due=cny(3_000),
                amount_paid=cny(3_000),
                state=ledger.OBLIGATION_STATE_CLOSED,
                outcome=ledger.OBLIGATION_OUTCOME_LATE,
                days_late=4,
            )
        ],
    )
    response.as_of_time.FromDatetime(datetime(2026, 11, 2, tzinfo=UTC))

    history = credit_history_from_proto(response)

    assert history.credit_line_minor == 800_000
    assert history.statements == (
        StatementRecord(2026, 10, 120_000, 5_000, RepaymentStatus.LATE, 2),
        StatementRecord(2026, 9, 100_000, 100_000, RepaymentStatus.PAID_IN_FULL, 0),
    )
    (obligation,) = history.obligations
    assert obligation.outcome is ObligationOutcome.LATE and obligation.days_late == 4
    assert history.closed_obligation_count == 1
    assert history.as_of == datetime(2026, 11, 2, tzinfo=UTC)


def test_a_history_without_a_credit_line_maps_to_none_not_zero() -> None:
    history = credit_history_from_proto(ledger.GetCreditHistoryResponse(user_id="u-2"))

    assert history.credit_line_minor is None
    assert history.statements == () and history.as_of is None


def test_statements_are_put_newest_first_whatever_order_they_came_in() -> None:
    response = ledger.GetCreditHistoryResponse(
        statements=[statement(2026, 8, 1, 1), statement(2026, 10, 3, 3), statement(2026, 9, 2, 2)]
    )

    history = credit_history_from_proto(response)

    assert [record.month for record in history.statements] == [10, 9, 8]


def test_a_month_that_appears_twice_is_refused_not_guessed_at() -> None:
    # The ledger keeps one statement per month: a second report replaces the first.
    response = ledger.GetCreditHistoryResponse(
        statements=[
            statement(2026, 10, 50_000, 50_000, ledger.REPAYMENT_STATUS_PAID_IN_FULL),
            statement(2026, 10, 20_000, 0, ledger.REPAYMENT_STATUS_LATE, 1),
        ]
    )

    with pytest.raises(LedgerHistoryError, match="appears twice"):
        credit_history_from_proto(response)


def test_amounts_in_several_currencies_are_refused() -> None:
    response = ledger.GetCreditHistoryResponse(
        credit_line=cny(1_000), statements=[statement(2026, 10, 1, 1, currency="TWD")]
    )

    with pytest.raises(LedgerHistoryError, match="currencies"):
        credit_history_from_proto(response)


def test_a_statement_without_a_repayment_status_is_refused() -> None:
    response = ledger.GetCreditHistoryResponse(
        statements=[statement(2026, 10, 1, 1, ledger.REPAYMENT_STATUS_UNSPECIFIED)]
    )

    with pytest.raises(LedgerHistoryError, match="repayment status"):
        credit_history_from_proto(response)


def test_a_late_statement_without_months_late_is_refused() -> None:
    response = ledger.GetCreditHistoryResponse(
        statements=[statement(2026, 10, 1, 1, ledger.REPAYMENT_STATUS_LATE, 0)]
    )

    with pytest.raises(LedgerHistoryError, match="months late"):
        credit_history_from_proto(response)


def test_more_statements_than_the_ledger_ever_returns_are_refused() -> None:
    response = ledger.GetCreditHistoryResponse(
        statements=[statement(2000 + index // 12, 1 + index % 12, 1, 1) for index in range(25)]
    )

    with pytest.raises(LedgerHistoryError, match="at most 24"):
        credit_history_from_proto(response)
