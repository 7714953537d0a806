"""Histories too thin to score are said to be so, with the reason, instead of being guessed."""

from __future__ import annotations

from datetime import UTC, datetime

from services.score.domain.history import (
    CreditHistory,
    ObligationOutcome,
    ObligationRecord,
    RepaymentStatus,
    StatementRecord,
)
from services.score.domain.thin_file import STATEMENTS_MIN, ThinFileReason, thin_file_reason

AS_OF = datetime(2005, 10, 1, tzinfo=UTC)


def statements(count: int) -> tuple[StatementRecord, ...]:
    return tuple(
        StatementRecord(2005, 9 - index, 100, 100, RepaymentStatus.PAID_IN_FULL, 0)
        for index in range(count)
    )


def obligation(outcome: ObligationOutcome) -> ObligationRecord:
    return ObligationRecord(1_000, 1_000, AS_OF, outcome)


def test_a_user_the_ledger_knows_nothing_about_has_no_history() -> None:
    assert thin_file_reason(CreditHistory(None, (), (), AS_OF)) is ThinFileReason.NO_HISTORY


def test_statements_without_a_credit_line_or_closed_obligations_are_too_thin() -> None:
    history = CreditHistory(None, statements(6), (obligation(ObligationOutcome.OPEN),), AS_OF)

    assert thin_file_reason(history) is ThinFileReason.NO_CREDIT_LINE


def test_too_few_statements_in_the_window_are_too_thin() -> None:
    history = CreditHistory(5_000_00, statements(STATEMENTS_MIN - 1), (), AS_OF)

    assert thin_file_reason(history) is ThinFileReason.TOO_FEW_STATEMENTS


def test_statements_that_left_the_window_do_not_count() -> None:
    history = CreditHistory(5_000_00, statements(6), (), datetime(2006, 6, 1, tzinfo=UTC))

    assert thin_file_reason(history) is ThinFileReason.TOO_FEW_STATEMENTS


def test_a_credit_line_and_enough_statements_can_be_scored() -> None:
    assert thin_file_reason(CreditHistory(5_000_00, statements(STATEMENTS_MIN), (), AS_OF)) is None


def test_a_closed_obligation_stands_in_for_a_credit_line() -> None:
    history = CreditHistory(None, statements(6), (obligation(ObligationOutcome.ON_TIME),), AS_OF)

    assert thin_file_reason(history) is None
