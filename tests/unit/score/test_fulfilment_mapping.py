"""The README's table "Sesame's own record in the score", row by row: how each Sesame obligation
becomes repayment facts of the month it was due, on the footing of a partner statement."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from services.score.domain.features import (
    FEATURES_READING_CREDIT_LINE,
    WindowMonth,
    compute_features,
    feature_dict,
    feature_window,
)
from services.score.domain.fulfilment import (
    DEFAULT_MONTHS_LATE,
    Fulfilment,
    months_late_for_days,
)
from services.score.domain.history import (
    CreditHistory,
    ObligationOutcome,
    ObligationRecord,
    RepaymentStatus,
    StatementRecord,
)

# Read as of 1 October 2005: the window is April (month 5) to September (month 0) 2005.
AS_OF = datetime(2005, 10, 1, tzinfo=UTC)
DUE_IN_AUGUST = datetime(2005, 8, 20, 12, tzinfo=UTC)  # month 1 of the window
AMOUNT_MINOR = 9_900


def obligation(
    outcome: ObligationOutcome,
    *,
    due_at: datetime = DUE_IN_AUGUST,
    days_late: int = 0,
    paid_minor: int = AMOUNT_MINOR,
) -> ObligationRecord:
    return ObligationRecord(AMOUNT_MINOR, paid_minor, due_at, outcome, days_late)


def window_of(*obligations: ObligationRecord, as_of: datetime | None = AS_OF) -> list[WindowMonth]:
    return list(feature_window(CreditHistory(None, (), obligations, as_of)).months)


@dataclass(frozen=True)
class Row:
    months_late: int
    status: RepaymentStatus
    billed_minor: int  # in the month before the due month
    paid_minor: int  # in the due month
    fulfilment: Fulfilment


# One case per row of the table, by the table's own words.
TABLE = {
    "closed on time": (
        obligation(ObligationOutcome.ON_TIME),
        Row(0, RepaymentStatus.PAID_IN_FULL, AMOUNT_MINOR, AMOUNT_MINOR, Fulfilment.ON_TIME),
    ),
    "closed late by N days": (
        obligation(ObligationOutcome.LATE, days_late=31),
        Row(2, RepaymentStatus.LATE, AMOUNT_MINOR, 0, Fulfilment.LATE),
    ),
    "defaulted": (
        obligation(ObligationOutcome.DEFAULTED, paid_minor=1_000),
        Row(DEFAULT_MONTHS_LATE, RepaymentStatus.LATE, AMOUNT_MINOR, 0, Fulfilment.DEFAULTED),
    ),
    # 20 August 12:00 to 1 October 00:00 is 41.5 days: 42 days unpaid, two months late.
    "open at as_of, D days past its due time": (
        obligation(ObligationOutcome.OPEN, paid_minor=5_000),
        Row(2, RepaymentStatus.LATE, AMOUNT_MINOR, 0, Fulfilment.UNPAID),
    ),
}


@pytest.mark.parametrize("row", list(TABLE))
def test_each_outcome_becomes_the_facts_of_the_month_it_was_due(row: str) -> None:
    record, expected = TABLE[row]

    months = window_of(record)
    (counted,) = feature_window(CreditHistory(None, (), (record,), AS_OF)).obligations

    due, before = months[1], months[2]
    assert due.months_late == expected.months_late
    assert due.status is expected.status
    assert due.paid_minor == expected.paid_minor
    assert before.billed_minor == expected.billed_minor
    assert counted.fulfilment is expected.fulfilment and counted.month_index == 1
    # Nothing else moves: the amounts never count against a credit line.
    assert due.billed_minor == 0 and before.paid_minor == 0
    assert all(month.balance_minor == 0 and month.amount_paid_minor == 0 for month in months)


def test_open_with_no_as_of_to_judge_it_by_is_not_counted() -> None:
    # Without an as_of the window ends with the newest closed obligation's month.
    closed = obligation(ObligationOutcome.ON_TIME)
    still_open = obligation(ObligationOutcome.OPEN, due_at=datetime(2005, 7, 1, tzinfo=UTC))

    history = CreditHistory(None, (), (closed, still_open), as_of=None)

    assert [counted.fulfilment for counted in feature_window(history).obligations] == [
        Fulfilment.ON_TIME
    ]


@pytest.mark.parametrize(
    "due_at",
    [
        datetime(2005, 3, 31, 23, 59, tzinfo=UTC),  # March: before the window
        datetime(2005, 10, 1, tzinfo=UTC),  # October: the month as_of falls in, not yet ended
    ],
)
def test_due_before_or_after_the_window_is_not_counted(due_at: datetime) -> None:
    history = CreditHistory(
        None, (), (obligation(ObligationOutcome.DEFAULTED, due_at=due_at),), AS_OF
    )

    assert feature_window(history).obligations == ()
    assert all(month.months_late == 0 for month in feature_window(history).months)


def test_in_a_month_with_a_partner_statement_the_worse_status_stands_and_amounts_add() -> None:
    august = StatementRecord(2005, 8, 50_000, 20_000, RepaymentStatus.LATE, 1)
    july = StatementRecord(2005, 7, 40_000, 30_000, RepaymentStatus.REVOLVING, 0)
    history = CreditHistory(
        1_000_000,
        (august, july),
        (obligation(ObligationOutcome.DEFAULTED, paid_minor=0),),
        AS_OF,
    )
    with_on_time = CreditHistory(
        1_000_000, (august, july), (obligation(ObligationOutcome.ON_TIME),), AS_OF
    )

    months = feature_window(history).months
    on_time_months = feature_window(with_on_time).months

    assert months[1].months_late == DEFAULT_MONTHS_LATE  # the default is worse than 1 month
    assert on_time_months[1].months_late == 1  # the statement's lateness is worse than on time
    assert on_time_months[1].status is RepaymentStatus.LATE
    # Amounts add for the payment features...
    assert months[2].billed_minor == 40_000 + AMOUNT_MINOR
    assert on_time_months[1].paid_minor == 20_000 + AMOUNT_MINOR
    # ...and never for the features read against the credit line.
    assert (months[2].balance_minor, on_time_months[1].amount_paid_minor) == (40_000, 20_000)
    line_features = {
        name: value
        for name, value in feature_dict(compute_features(history)).items()
        if name in FEATURES_READING_CREDIT_LINE
    }
    partner_only = feature_dict(
        compute_features(CreditHistory(1_000_000, (august, july), (), AS_OF))
    )
    assert line_features == {name: partner_only[name] for name in line_features}


@pytest.mark.parametrize(
    ("days", "months"), [(1, 1), (30, 1), (31, 2), (60, 2), (61, 3), (240, 8), (3650, 8)]
)
def test_days_late_become_the_months_late_a_partner_would_report(days: int, months: int) -> None:
    assert months_late_for_days(days) == months


def test_a_still_open_obligation_grows_later_as_time_passes() -> None:
    still_open = obligation(ObligationOutcome.OPEN)
    late_by = [
        window_of(still_open, as_of=as_of)[index].months_late
        for as_of, index in (
            (datetime(2005, 9, 1, tzinfo=UTC), 0),
            (datetime(2005, 10, 1, tzinfo=UTC), 1),
            (datetime(2005, 12, 1, tzinfo=UTC), 3),
        )
    ]

    assert late_by == [1, 2, 4]


def test_a_sesame_only_history_has_its_credit_line_features_missing() -> None:
    values = feature_dict(
        compute_features(CreditHistory(None, (), (obligation(ObligationOutcome.ON_TIME),), AS_OF))
    )

    assert {name for name, value in values.items() if math.isnan(value)} == set(
        FEATURES_READING_CREDIT_LINE
    )
    assert values["payment_ratio_previous"] == 1.0  # August paid the bill of July in full
