"""Negative records stop counting five years after they happened; the journal keeps them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.score.domain.history import (
    CreditHistory,
    ObligationOutcome,
    ObligationRecord,
    RepaymentStatus,
    StatementRecord,
)
from services.score.domain.record_age import forgotten_before, without_expired_negative_records

DUE = datetime(2020, 3, 5, tzinfo=UTC)


def obligation(outcome: ObligationOutcome, days_late: int = 0) -> ObligationRecord:
    paid = 300 if outcome in (ObligationOutcome.ON_TIME, ObligationOutcome.LATE) else 0
    return ObligationRecord(300, paid, DUE, outcome, days_late)


def late_statement(year: int, month: int) -> StatementRecord:
    return StatementRecord(year, month, 1000, 0, RepaymentStatus.LATE, 2)


def history(as_of: datetime) -> CreditHistory:
    return CreditHistory(
        credit_line_minor=None,
        statements=(
            StatementRecord(2020, 4, 1000, 1000, RepaymentStatus.PAID_IN_FULL, 0),
            late_statement(2020, 3),
        ),
        obligations=(
            obligation(ObligationOutcome.DEFAULTED),
            obligation(ObligationOutcome.LATE, days_late=10),
            obligation(ObligationOutcome.OPEN),
            obligation(ObligationOutcome.ON_TIME),
        ),
        as_of=as_of,
    )


def test_negative_records_count_until_five_years_have_passed() -> None:
    read = without_expired_negative_records(history(DUE + timedelta(days=5 * 365)))
    assert [o.outcome for o in read.obligations] == [
        ObligationOutcome.DEFAULTED,
        ObligationOutcome.LATE,
        ObligationOutcome.OPEN,
        ObligationOutcome.ON_TIME,
    ]
    assert len(read.statements) == 2


def test_after_five_years_only_the_records_that_speak_for_the_person_remain() -> None:
    as_of = datetime(2025, 4, 1, tzinfo=UTC)  # five years after March 2020 ended
    original = history(as_of)

    read = without_expired_negative_records(original)

    assert [o.outcome for o in read.obligations] == [ObligationOutcome.ON_TIME]
    assert [s.repayment_status for s in read.statements] == [RepaymentStatus.PAID_IN_FULL]
    # What was read is left as it was: the journal's record is not the score's business.
    assert len(original.obligations) == 4 and len(original.statements) == 2


def test_a_late_statement_counts_until_its_whole_month_is_five_years_past() -> None:
    at_month_end = datetime(2025, 3, 31, 23, 59, tzinfo=UTC)
    assert len(without_expired_negative_records(history(at_month_end)).statements) == 2


def test_five_years_before_a_leap_day_is_the_last_of_february() -> None:
    assert forgotten_before(datetime(2028, 2, 29, tzinfo=UTC)) == datetime(2023, 2, 28, tzinfo=UTC)


def test_a_history_without_a_moment_is_read_as_it_is() -> None:
    undated = CreditHistory(None, (late_statement(2001, 1),))
    assert without_expired_negative_records(undated) is undated


def test_in_the_first_five_years_of_the_calendar_nothing_has_expired() -> None:
    """A score as of year 3 (protobuf's Timestamp reaches back to year 1) is answered, not
    failed: no record is five years old yet."""
    as_of = datetime(3, 2, 1, tzinfo=UTC)
    assert forgotten_before(as_of) == datetime.min.replace(tzinfo=UTC)
    early = CreditHistory(
        credit_line_minor=None,
        statements=(late_statement(2, 5),),
        obligations=(),
        as_of=as_of,
    )
    assert without_expired_negative_records(early) == early
