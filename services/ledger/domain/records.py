"""The ledger's projections: accounts, holds, obligations, statements and credit lines.

Records are immutable; `UserState` is the mutable container `apply` folds events into. Times are
integer microseconds since the Unix epoch, UTC, and named with a `_us` suffix.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field, replace
from datetime import date
from enum import StrEnum

GENESIS_HASH = "0" * 64
MICROSECONDS_PER_SECOND = 1_000_000
MICROSECONDS_PER_DAY = 86_400 * MICROSECONDS_PER_SECOND
_EPOCH = date(1970, 1, 1)


class HoldState(StrEnum):
    OPEN = "OPEN"
    CAPTURED = "CAPTURED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"


class ObligationState(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class ObligationOutcome(StrEnum):
    ON_TIME = "ON_TIME"
    LATE = "LATE"
    DEFAULTED = "DEFAULTED"


class ConsentState(StrEnum):
    """Whether the user consents to be scored."""

    NOT_GIVEN = "NOT_GIVEN"
    GRANTED = "GRANTED"
    WITHDRAWN = "WITHDRAWN"


class RepaymentStatus(StrEnum):
    NO_USE = "NO_USE"
    PAID_IN_FULL = "PAID_IN_FULL"
    REVOLVING = "REVOLVING"
    LATE = "LATE"


# Obligations paid up to this many days late count as "late up to 30 days" in the summary.
LATE_SHORT_DAYS_MAX = 30


@dataclass(frozen=True, slots=True, order=True)
class StatementPeriod:
    """A calendar month; periods order chronologically."""

    year: int
    month: int

    @property
    def end_us(self) -> int:
        """The first instant after the month (UTC): a statement counts once its month has ended."""
        days_before = (date(self.year, self.month, 1) - _EPOCH).days
        days_in_month = calendar.monthrange(self.year, self.month)[1]
        return (days_before + days_in_month) * MICROSECONDS_PER_DAY

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True, slots=True)
class ChainHead:
    """Where a user's hash chain ends: the last user sequence and its hash."""

    user_sequence: int = 0
    hash: str = GENESIS_HASH


@dataclass(frozen=True, slots=True)
class OutcomeCounts:
    on_time: int = 0
    late_up_to_30_days: int = 0
    late_over_30_days: int = 0
    defaulted: int = 0
    fulfilled: int = 0


@dataclass(frozen=True, slots=True)
class Account:
    """A user's position. `currency_code` is empty until a capacity or obligation sets it.

    `held_minor` and `open_hold_count` cover every OPEN hold, including those past their expiry
    that the sweeper has not journaled yet; readers subtract those at read time.
    """

    user_id: str
    currency_code: str = ""
    waiver_capacity_minor: int = 0
    held_minor: int = 0
    open_hold_count: int = 0
    outstanding_minor: int = 0
    outcomes: OutcomeCounts = OutcomeCounts()
    # The consent to be scored and when it began (None while never given).
    consent: ConsentState = ConsentState.NOT_GIVEN
    consent_since_us: int | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    hold_id: str
    user_id: str
    currency_code: str
    amount_minor: int
    state: HoldState
    reference: str
    placed_at_us: int
    expires_at_us: int
    captured_minor: int = 0
    resolved_at_us: int | None = None
    obligation_id: str = ""
    fulfilled: bool = False

    def is_open_at(self, now_us: int) -> bool:
        """Open and not yet expired: the hold still uses capacity at `now_us`."""
        return self.state is HoldState.OPEN and now_us < self.expires_at_us

    def as_seen_at(self, now_us: int) -> Hold:
        """The hold as a reader sees it: an open hold past its expiry reads as EXPIRED."""
        if self.state is HoldState.OPEN and now_us >= self.expires_at_us:
            return replace(self, state=HoldState.EXPIRED, resolved_at_us=self.expires_at_us)
        return self


@dataclass(frozen=True, slots=True)
class Obligation:
    obligation_id: str
    user_id: str
    currency_code: str
    amount_due_minor: int
    due_at_us: int
    purpose: str
    reference: str
    created_at_us: int
    hold_id: str = ""
    amount_paid_minor: int = 0
    state: ObligationState = ObligationState.OPEN
    outcome: ObligationOutcome | None = None
    days_late: int = 0
    closed_at_us: int | None = None
    # The user's own statement on the record, the latest attached; empty when none was.
    attached_statement: str = ""
    attached_statement_at_us: int | None = None

    @property
    def remaining_minor(self) -> int:
        return self.amount_due_minor - self.amount_paid_minor

    @property
    def is_negative_record(self) -> bool:
        """Closed late or defaulted: a record that counts against the user, which the user may
        answer with a statement of their own. An open obligation is not (yet): it can still be
        paid, and its lateness is not decided."""
        return self.state is ObligationState.CLOSED and self.outcome in (
            ObligationOutcome.LATE,
            ObligationOutcome.DEFAULTED,
        )

    def as_of(self, as_of_us: int) -> Obligation:
        """The obligation as it stood at `as_of_us`: an outcome decided later is not shown yet,
        nor the statement attached to that outcome."""
        if self.closed_at_us is not None and self.closed_at_us > as_of_us:
            return replace(
                self,
                state=ObligationState.OPEN,
                outcome=None,
                days_late=0,
                closed_at_us=None,
                attached_statement="",
                attached_statement_at_us=None,
            )
        return self


@dataclass(frozen=True, slots=True)
class Statement:
    user_id: str
    partner_id: str
    period: StatementPeriod
    currency_code: str
    balance_minor: int
    amount_paid_minor: int
    repayment_status: RepaymentStatus
    months_late: int = 0


@dataclass(frozen=True, slots=True)
class CreditLine:
    user_id: str
    partner_id: str
    currency_code: str
    amount_minor: int


@dataclass(slots=True)
class UserState:
    """Everything the ledger knows about one user, or the part of it a write needs.

    A write loads only what its rule reads (the account, the hold being captured, ...); the
    verifier builds it whole from the journal. `chain` is maintained by the journal, not by
    `apply`.
    """

    account: Account
    chain: ChainHead = ChainHead()
    holds: dict[str, Hold] = field(default_factory=dict)
    obligations: dict[str, Obligation] = field(default_factory=dict)
    statements: dict[StatementPeriod, Statement] = field(default_factory=dict)
    credit_line: CreditLine | None = None

    @classmethod
    def empty(cls, user_id: str) -> UserState:
        return cls(account=Account(user_id=user_id))

    @property
    def user_id(self) -> str:
        return self.account.user_id

    def snapshot(self) -> UserState:
        """A copy that later `apply` calls do not change (records are immutable)."""
        return UserState(
            account=self.account,
            chain=self.chain,
            holds=dict(self.holds),
            obligations=dict(self.obligations),
            statements=dict(self.statements),
            credit_line=self.credit_line,
        )
