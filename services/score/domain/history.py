"""A user's credit history as the score model reads it: plain values, no protobuf.

`services.score.adapters.ledger_history` builds one from the ledger's GetCreditHistory answer;
training builds one from a row of the Taiwan data set through the same adapter, so the feature
function sees exactly the same kind of value in both places.

Money is integer minor units of the reporting currency, as in the ledger.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime

MONTHS_PER_YEAR = 12
# The ledger's own bounds on a statement's months late and an obligation's days late.
MONTHS_LATE_MAX = 99
DAYS_LATE_MAX = 3650


class RepaymentStatus(enum.Enum):
    """How the user handled a monthly statement, as the lending partner reported it."""

    # The credit line was not used that month.
    NO_USE = "no_use"
    # The statement was paid in full.
    PAID_IN_FULL = "paid_in_full"
    # The minimum was paid and the rest revolved.
    REVOLVING = "revolving"
    # The payment was late; `StatementRecord.months_late` says by how many months.
    LATE = "late"


class ObligationOutcome(enum.Enum):
    """Where an obligation the user owes Sesame stands."""

    # Not closed yet.
    OPEN = "open"
    ON_TIME = "on_time"
    LATE = "late"
    DEFAULTED = "defaulted"


@dataclass(frozen=True, order=True)
class MonthPeriod:
    """A calendar month; ordered by time."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= MONTHS_PER_YEAR:
            raise ValueError(f"month must be 1 to 12, got {self.month}")

    def months_before(self, later: MonthPeriod) -> int:
        """How many months this period lies before `later` (negative when it is after it)."""
        return (later.year - self.year) * MONTHS_PER_YEAR + (later.month - self.month)

    def previous(self) -> MonthPeriod:
        if self.month == 1:
            return MonthPeriod(self.year - 1, MONTHS_PER_YEAR)
        return MonthPeriod(self.year, self.month - 1)

    @staticmethod
    def last_ended_by(moment: datetime) -> MonthPeriod:
        """The latest month that had ended by `moment`: the month before the one it falls in.

        The ledger counts a statement once its month has ended, so a history read as of the first
        instant of October includes September and nothing later. Months are UTC months, as in
        the ledger; a moment without a time zone is taken to be UTC.
        """
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
        return MonthPeriod(moment.year, moment.month).previous()


@dataclass(frozen=True)
class StatementRecord:
    """One partner-reported monthly statement."""

    year: int
    month: int
    # The balance billed; negative for a credit balance.
    balance_minor: int
    # What the user paid during the month; zero or positive.
    amount_paid_minor: int
    repayment_status: RepaymentStatus
    # 1 to 99 when `repayment_status` is LATE, 0 otherwise.
    months_late: int

    def __post_init__(self) -> None:
        # Paired with the ledger's own validation: a record that breaks these did not come from
        # the ledger, and features computed from it would mean nothing.
        MonthPeriod(self.year, self.month)
        if self.amount_paid_minor < 0:
            raise ValueError(f"amount paid must not be negative, got {self.amount_paid_minor}")
        if self.repayment_status is RepaymentStatus.LATE:
            if not 1 <= self.months_late <= MONTHS_LATE_MAX:
                raise ValueError(
                    f"a late statement needs 1 to 99 months late, got {self.months_late}"
                )
        elif self.months_late != 0:
            raise ValueError(f"months late is set on a {self.repayment_status.value} statement")

    @property
    def period(self) -> MonthPeriod:
        return MonthPeriod(self.year, self.month)


@dataclass(frozen=True)
class ObligationRecord:
    """Something the user owed Sesame (a fee captured from a hold, for example) and its outcome."""

    amount_due_minor: int
    amount_paid_minor: int
    due_at: datetime | None
    outcome: ObligationOutcome
    # Days after the due time it was paid in full; set only with the LATE outcome.
    days_late: int = 0

    def __post_init__(self) -> None:
        # Paired with the ledger's own validation, as for statements.
        if self.amount_due_minor < 0 or self.amount_paid_minor < 0:
            raise ValueError("an obligation's amounts must not be negative")
        if self.outcome is ObligationOutcome.LATE:
            if not 1 <= self.days_late <= DAYS_LATE_MAX:
                raise ValueError(
                    f"a late obligation needs 1 to 3650 days late, got {self.days_late}"
                )
        elif self.days_late != 0:
            raise ValueError(f"days late is set on an obligation {self.outcome.value}")

    @property
    def closed(self) -> bool:
        return self.outcome is not ObligationOutcome.OPEN


@dataclass(frozen=True)
class CreditHistory:
    """What the ledger knows about a user's credit, as of a moment."""

    # The latest credit line a partner reported; None when none was.
    credit_line_minor: int | None
    # The most recent statements, newest first, at most one per month.
    statements: tuple[StatementRecord, ...]
    # Obligations, newest first.
    obligations: tuple[ObligationRecord, ...] = ()
    # The moment the history was read as of; None when unknown.
    as_of: datetime | None = None

    def __post_init__(self) -> None:
        periods = [statement.period for statement in self.statements]
        for newer, older in itertools.pairwise(periods):
            if not older < newer:
                raise ValueError(
                    f"statements must be newest first, one per month; {older} follows {newer}"
                )

    @property
    def closed_obligation_count(self) -> int:
        return sum(1 for obligation in self.obligations if obligation.closed)
