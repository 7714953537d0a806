"""Histories too thin to score are said to be so, with the reason, instead of being guessed: three
months of the window on record (partner statements or Sesame obligations), or a broken promise."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.score.domain.history import (
    CreditHistory,
    ObligationOutcome,
    ObligationRecord,
    RepaymentStatus,
    StatementRecord,
)
from services.score.domain.thin_file import (
    MONTHS_ON_RECORD_MIN,
    ThinFileReason,
    thin_file_reason,
)

AS_OF = datetime(2005, 10, 1, tzinfo=UTC)


def statements(count: int) -> tuple[StatementRecord, ...]:
    return tuple(
        StatementRecord(2005, 9 - index, 100, 100, RepaymentStatus.PAID_IN_FULL, 0)
        for index in range(count)
    )


def obligation(
    month: int, outcome: ObligationOutcome = ObligationOutcome.ON_TIME, days_late: int = 0
) -> ObligationRecord:
    paid = 0 if outcome in (ObligationOutcome.OPEN, ObligationOutcome.DEFAULTED) else 1_000
    return ObligationRecord(
        1_000, paid, datetime(2005, month, 10, tzinfo=UTC), outcome, days_late=days_late
    )


def sesame_only(*obligations: ObligationRecord) -> CreditHistory:
    return CreditHistory(None, (), obligations, AS_OF)


def test_a_user_the_ledger_knows_nothing_about_has_no_history() -> None:
    assert thin_file_reason(CreditHistory(None, (), (), AS_OF)) is ThinFileReason.NO_HISTORY


def test_too_few_statements_in_the_window_are_too_thin() -> None:
    history = CreditHistory(5_000_00, statements(MONTHS_ON_RECORD_MIN - 1), (), AS_OF)

    assert thin_file_reason(history) is ThinFileReason.TOO_FEW_MONTHS_ON_RECORD


def test_statements_that_left_the_window_do_not_count() -> None:
    history = CreditHistory(5_000_00, statements(6), (), datetime(2006, 6, 1, tzinfo=UTC))

    assert thin_file_reason(history) is ThinFileReason.TOO_FEW_MONTHS_ON_RECORD


def test_a_credit_line_and_enough_statements_can_be_scored() -> None:
    history = CreditHistory(5_000_00, statements(MONTHS_ON_RECORD_MIN), (), AS_OF)

    assert thin_file_reason(history) is None


def test_statements_without_a_credit_line_can_be_scored_now_that_the_model_handles_it() -> None:
    assert thin_file_reason(CreditHistory(None, statements(3), (), AS_OF)) is None


def test_three_months_of_sesame_obligations_closed_on_time_are_enough() -> None:
    assert thin_file_reason(sesame_only(obligation(9), obligation(8), obligation(7))) is None


@pytest.mark.parametrize("months", [(9,), (9, 8), (9, 9, 9), (9, 9, 8, 8)])
def test_fewer_than_three_months_of_kept_promises_are_too_thin(months: tuple[int, ...]) -> None:
    history = sesame_only(*(obligation(month) for month in months))

    assert thin_file_reason(history) is ThinFileReason.TOO_FEW_MONTHS_ON_RECORD


def test_a_late_payment_is_a_month_on_record_but_not_a_broken_promise() -> None:
    late = obligation(9, ObligationOutcome.LATE, days_late=3)

    assert thin_file_reason(sesame_only(late)) is ThinFileReason.TOO_FEW_MONTHS_ON_RECORD
    assert thin_file_reason(sesame_only(late, obligation(8), obligation(7))) is None


def test_statements_and_obligations_make_up_the_months_together() -> None:
    history = CreditHistory(5_000_00, statements(2), (obligation(7),), AS_OF)

    assert thin_file_reason(history) is None


def test_an_obligation_in_a_month_that_has_a_statement_adds_no_month() -> None:
    history = CreditHistory(5_000_00, statements(2), (obligation(9),), AS_OF)

    assert thin_file_reason(history) is ThinFileReason.TOO_FEW_MONTHS_ON_RECORD


@pytest.mark.parametrize("outcome", [ObligationOutcome.DEFAULTED, ObligationOutcome.OPEN])
def test_a_broken_promise_is_scored_however_thin_the_file(outcome: ObligationOutcome) -> None:
    # An open obligation due in September is unpaid past its due time as of October.
    assert thin_file_reason(sesame_only(obligation(9, outcome))) is None


def test_obligations_outside_the_window_or_not_yet_due_do_not_count() -> None:
    history = sesame_only(
        obligation(3),  # before the window (April to September)
        obligation(2, ObligationOutcome.DEFAULTED),
        ObligationRecord(1_000, 0, datetime(2005, 10, 20, tzinfo=UTC), ObligationOutcome.OPEN),
        obligation(9),
    )

    assert thin_file_reason(history) is ThinFileReason.TOO_FEW_MONTHS_ON_RECORD
