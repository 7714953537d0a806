"""How the feature function reads histories that are not six tidy months: gaps, old statements,
no credit line, and the moment the history is read as of."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.score.domain.features import (
    FEATURE_NAMES,
    FEATURES_READING_CREDIT_LINE,
    compute_features,
    feature_dict,
    feature_window_statement_count,
)
from services.score.domain.history import (
    CreditHistory,
    MonthPeriod,
    RepaymentStatus,
    StatementRecord,
)

OCTOBER_2005 = datetime(2005, 10, 1, tzinfo=UTC)


def statement(
    year: int,
    month: int,
    *,
    balance: int = 100_00,
    paid: int = 100_00,
    status: RepaymentStatus = RepaymentStatus.REVOLVING,
    months_late: int = 0,
) -> StatementRecord:
    return StatementRecord(year, month, balance, paid, status, months_late)


def late(year: int, month: int, months_late: int) -> StatementRecord:
    return statement(year, month, status=RepaymentStatus.LATE, months_late=months_late)


def features(history: CreditHistory) -> dict[str, float]:
    return feature_dict(compute_features(history))


def test_the_window_ends_with_the_last_month_ended_by_the_as_of_time() -> None:
    assert MonthPeriod.last_ended_by(OCTOBER_2005) == MonthPeriod(2005, 9)
    assert MonthPeriod.last_ended_by(datetime(2005, 10, 31, 23, 59, tzinfo=UTC)) == MonthPeriod(
        2005, 9
    )
    assert MonthPeriod.last_ended_by(datetime(2006, 1, 15, tzinfo=UTC)) == MonthPeriod(2005, 12)


def test_as_of_times_in_other_zones_are_read_in_utc() -> None:
    # 1 October 2005 07:00 in Taipei is still 30 September in UTC: September has not ended.
    taipei = timezone(timedelta(hours=8))
    assert MonthPeriod.last_ended_by(datetime(2005, 10, 1, 7, tzinfo=taipei)) == MonthPeriod(
        2005, 8
    )


def test_a_late_statement_that_is_no_longer_the_newest_month_counts_as_older() -> None:
    # Read in November, September's late payment is one month back, not the newest.
    history = CreditHistory(10_000_00, (late(2005, 9, 2),), as_of=datetime(2005, 11, 2, tzinfo=UTC))

    values = features(history)

    assert values["months_late_latest"] == 0
    assert values["months_late_previous"] == 2
    assert values["months_since_late"] == 1


def test_missing_months_count_as_months_of_no_use() -> None:
    history = CreditHistory(
        10_000_00,
        (statement(2005, 9, balance=5_000_00, paid=0), statement(2005, 7, balance=2_000_00)),
        as_of=OCTOBER_2005,
    )

    values = features(history)

    assert values["utilisation_latest"] == 0.5
    assert values["utilisation_mean"] == pytest.approx(0.7 / 6)
    # August is missing: nothing was owed there, so September's payment ratio is 1; and nothing
    # was paid in August towards July's balance.
    assert values["payment_ratio_latest"] == 1.0
    assert values["payment_ratio_previous"] == 0.0
    assert values["months_paid_nothing"] == 1
    assert feature_window_statement_count(history) == 2


def test_statements_older_than_six_months_are_ignored() -> None:
    recent = (statement(2005, 9), statement(2005, 8))
    with_old_late = CreditHistory(10_000_00, (*recent, late(2005, 3, 5)), as_of=OCTOBER_2005)

    assert features(with_old_late) == features(CreditHistory(10_000_00, recent, as_of=OCTOBER_2005))
    assert feature_window_statement_count(with_old_late) == 2


def test_without_an_as_of_time_the_window_ends_with_the_newest_statement() -> None:
    history = CreditHistory(10_000_00, (late(2004, 5, 1),))

    assert features(history)["months_late_latest"] == 1


def test_without_a_credit_line_what_is_read_against_it_is_missing_and_the_rest_finite() -> None:
    for credit_line in (None, 0):
        history = CreditHistory(
            credit_line, (statement(2005, 9, balance=3_000_00),), as_of=OCTOBER_2005
        )

        values = features(history)

        missing = {name for name, value in values.items() if math.isnan(value)}
        assert missing == set(FEATURES_READING_CREDIT_LINE)
        assert missing >= {"credit_line", "utilisation_latest", "utilisation_max"}
        assert all(math.isfinite(values[name]) for name in set(values) - missing)


def test_an_empty_history_is_finite_but_for_the_missing_credit_line() -> None:
    values = compute_features(CreditHistory(None, ()))

    assert len(values) == len(FEATURE_NAMES)
    assert all(
        math.isnan(value) == (name in FEATURES_READING_CREDIT_LINE)
        for name, value in zip(FEATURE_NAMES, values, strict=True)
    )


def test_a_payment_larger_than_the_balance_owed_counts_as_paid_in_full() -> None:
    history = CreditHistory(
        10_000_00,
        (statement(2005, 9, paid=900_00), statement(2005, 8, balance=300_00)),
        as_of=OCTOBER_2005,
    )

    assert features(history)["payment_ratio_latest"] == 1.0


def test_statements_must_be_newest_first_and_one_per_month() -> None:
    with pytest.raises(ValueError, match="newest first"):
        CreditHistory(1, (statement(2005, 8), statement(2005, 9)))
    with pytest.raises(ValueError, match="newest first"):
        CreditHistory(1, (statement(2005, 9), statement(2005, 9)))


@pytest.mark.parametrize(
    ("status", "months_late"),
    [(RepaymentStatus.LATE, 0), (RepaymentStatus.LATE, 100), (RepaymentStatus.REVOLVING, 2)],
)
def test_months_late_must_match_the_status(status: RepaymentStatus, months_late: int) -> None:
    with pytest.raises(ValueError, match="late"):
        statement(2005, 9, status=status, months_late=months_late)


def test_a_negative_payment_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        statement(2005, 9, paid=-1)
