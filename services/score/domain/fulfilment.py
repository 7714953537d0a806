"""Sesame's own obligations as months of the feature window: the fulfilment record counts.

The model learnt from partner statements, month by month: a repayment status (paid in full,
revolving, N months late), a balance and what was paid. The training data has no Sesame
obligation, so an obligation counts by being put on that same footing: each one becomes facts
about the month it was due, which the model already knows how to read. The README's table
("Sesame's own record in the score") is the mapping, row by row:

* closed on time: its due month is a month paid in full (0 months late); the amount due is
  billed in the month before and paid in the due month;
* closed late by N days: N / 30 rounded up months late, at most `DEFAULT_MONTHS_LATE`; the
  amount due is billed, nothing counts as paid;
* defaulted: `DEFAULT_MONTHS_LATE` months late, the worst the model knows; billed, not paid;
* still open at as_of, D days past its due time: late by D days, as if closed late then;
* due outside the window, or open with no as_of to judge it by: not counted.

Why each choice:

* The due month, not the close month: a partner reports lateness against the month a payment was
  due, and the due time is fixed when the obligation is created, so an obligation never moves
  between months as it closes, and a still-open one is placed exactly where it will stay.
* Billed the month before, paid in the due month: the features pair what was paid in a month
  with the balance of the month before (a card's statement is paid the following month), so an
  obligation's bill and its payment meet in the same payment ratio.
* Only an on-time payment counts as paid. A payment made after the due time, or short of a
  default, was not made when it was due; counting it would let a late payment improve the
  payment ratios, so adding a late obligation could raise a score. Counted this way every
  constrained feature moves one way: an on-time obligation never makes any feature riskier, a
  late one, a default or an unpaid one never makes any less risky.
* Days to months: a partner's "1 month late" is a payment up to a month overdue, so any delay of
  1 to 30 days is one month late, 31 to 60 two, and so on.
* A default is the worst delinquency in the training data (`DEFAULT_MONTHS_LATE`); a larger
  number would fall beyond the last split the model learnt and mean nothing more.

Amounts never touch the features that read the partner's credit line (utilisation, new spending,
payments against the line): a Sesame obligation is not drawn on that line, and those features
are free to bend either way, so an amount there could turn a kept promise into a lower score.

When a partner statement and Sesame obligations fall in the same month, the larger months late
stands, and the amounts add to the statement's for the payment features.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from services.score.domain.history import MonthPeriod, ObligationOutcome, ObligationRecord

# A partner's "one month late" is a delay of up to a month.
DAYS_PER_MONTH_LATE = 30
# The worst repayment status of the training data (its PAY_x columns reach 8 months late): the
# worst delinquency the model knows, which a default counts as. Training checks the data agrees.
DEFAULT_MONTHS_LATE = 8
SECONDS_PER_DAY = 86_400


class Fulfilment(enum.Enum):
    """How a counted obligation stands as of the history's as_of time."""

    ON_TIME = "on_time"
    LATE = "late"
    DEFAULTED = "defaulted"
    # Open and past its due time: late until it is paid.
    UNPAID = "unpaid"

    @property
    def promise_broken(self) -> bool:
        """A default, or an amount still unpaid past its due time."""
        return self in (Fulfilment.DEFAULTED, Fulfilment.UNPAID)


@dataclass(frozen=True)
class CountedObligation:
    """One Sesame obligation as the feature window counts it."""

    # Months before the window's newest month (0 = the newest) of the month it was due.
    month_index: int
    due_at: datetime
    fulfilment: Fulfilment
    # Days after the due time it was paid (LATE) or has stayed unpaid (UNPAID); 0 otherwise.
    days_late: int
    months_late: int
    # What the obligation adds to the month before its due month's billed amount.
    billed_minor: int
    # What it adds to its due month's paid amount: the amount due when paid on time, else 0.
    paid_on_time_minor: int

    def __post_init__(self) -> None:
        assert self.month_index >= 0
        assert 0 <= self.months_late <= DEFAULT_MONTHS_LATE
        assert (self.months_late == 0) == (self.fulfilment is Fulfilment.ON_TIME)
        assert self.paid_on_time_minor in (0, self.billed_minor)


@dataclass(frozen=True)
class SesameRecord:
    """What the reasons need of Sesame's own record in a history: the obligations the window
    counted, and the features they made riskier than the partner's statements alone would."""

    obligations: tuple[CountedObligation, ...]
    worsened_features: frozenset[str]


def months_late_for_days(days_late: int) -> int:
    """A delay in days as the months late a partner would report: 1 to 30 days is one month."""
    if days_late <= 0:
        raise ValueError(f"a delay is at least one day, got {days_late}")
    return min(math.ceil(days_late / DAYS_PER_MONTH_LATE), DEFAULT_MONTHS_LATE)


def counted_obligations(
    obligations: Iterable[ObligationRecord],
    window_end: MonthPeriod,
    window_months: int,
    as_of: datetime | None,
) -> tuple[CountedObligation, ...]:
    """The obligations the window counts (see the module's table), in the order given."""
    counted = []
    for obligation in obligations:
        if obligation.due_at is None:
            continue
        month_index = due_month(obligation.due_at).months_before(window_end)
        if not 0 <= month_index < window_months:
            continue
        fulfilment_and_days = _fulfilment(obligation, as_of)
        if fulfilment_and_days is None:
            continue
        fulfilment, days_late = fulfilment_and_days
        billed_minor = obligation.amount_due_minor
        counted.append(
            CountedObligation(
                month_index=month_index,
                due_at=obligation.due_at,
                fulfilment=fulfilment,
                days_late=days_late,
                months_late=_months_late(fulfilment, days_late),
                billed_minor=billed_minor,
                paid_on_time_minor=billed_minor if fulfilment is Fulfilment.ON_TIME else 0,
            )
        )
    return tuple(counted)


def due_month(due_at: datetime) -> MonthPeriod:
    """The UTC month an obligation is due in: the month it counts in."""
    if due_at.tzinfo is not None:
        due_at = due_at.astimezone(UTC)
    return MonthPeriod(due_at.year, due_at.month)


def _fulfilment(
    obligation: ObligationRecord, as_of: datetime | None
) -> tuple[Fulfilment, int] | None:
    if obligation.outcome is ObligationOutcome.ON_TIME:
        return Fulfilment.ON_TIME, 0
    if obligation.outcome is ObligationOutcome.LATE:
        return Fulfilment.LATE, obligation.days_late
    if obligation.outcome is ObligationOutcome.DEFAULTED:
        return Fulfilment.DEFAULTED, 0
    # Open: late by how long it has been unpaid, which only an as_of time can tell.
    assert obligation.due_at is not None
    if as_of is None or as_of <= obligation.due_at:
        return None
    overdue_s = (as_of - obligation.due_at).total_seconds()
    return Fulfilment.UNPAID, math.ceil(overdue_s / SECONDS_PER_DAY)


def _months_late(fulfilment: Fulfilment, days_late: int) -> int:
    if fulfilment is Fulfilment.ON_TIME:
        return 0
    if fulfilment is Fulfilment.DEFAULTED:
        return DEFAULT_MONTHS_LATE
    return months_late_for_days(days_late)
