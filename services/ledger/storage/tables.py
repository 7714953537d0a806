"""The ledger's tables. Queries use their SQLAlchemy Core form (`Model.__table__`).

Times are integer microseconds since the Unix epoch (UTC); money is integer minor units. The
database enforces what it can on its own: amounts of the right sign, states from a fixed set, one
resolution per hold, one entry per user sequence; triggers created by the migration refuse any
UPDATE or DELETE of the journal.

The migrations in `migrations/versions` create exactly these tables; a test compares the two.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
ledger_metadata = MetaData(naming_convention=NAMING_CONVENTION)

ID_LENGTH = 128
HASH_LENGTH = 64
# SQLite makes a table's rowid its primary key only for a column declared exactly INTEGER, which
# keeps journal appends cheap there; PostgreSQL needs BIGINT for a 64-bit sequence.
SEQUENCE_TYPE = BigInteger().with_variant(Integer(), "sqlite")


class LedgerTable(SQLModel, registry=registry(metadata=ledger_metadata)):
    """Base of the ledger's tables: their own metadata, apart from other services' tables."""


def _id(*constraints: Any) -> Any:
    return Field(sa_column=Column(String(ID_LENGTH), *constraints, nullable=False))


def _integer() -> Any:
    return Field(sa_column=Column(BigInteger, nullable=False))


def _optional_integer() -> Any:
    return Field(default=None, sa_column=Column(BigInteger, nullable=True))


def _string(length: int) -> Any:
    return Field(sa_column=Column(String(length), nullable=False))


class JournalHeadRow(LedgerTable, table=True):
    """One row: the last global sequence allocated. Its row lock orders commits."""

    __tablename__: ClassVar[Any] = "journal_head"
    __table_args__ = (
        CheckConstraint("id = 1", name="single_row"),
        CheckConstraint("last_global_sequence >= 0", name="sequence_not_negative"),
    )
    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    last_global_sequence: int = _integer()


class JournalEntryRow(LedgerTable, table=True):
    __tablename__: ClassVar[Any] = "journal_entry"
    __table_args__ = (
        UniqueConstraint("user_id", "user_sequence"),
        CheckConstraint("global_sequence > 0", name="global_sequence_positive"),
        CheckConstraint("user_sequence > 0", name="user_sequence_positive"),
    )
    global_sequence: int = Field(
        sa_column=Column(SEQUENCE_TYPE, primary_key=True, autoincrement=False)
    )
    user_id: str = _id(ForeignKey("account.user_id"))
    user_sequence: int = _integer()
    entry_type: str = _string(32)
    payload_json: str = Field(sa_column=Column(Text, nullable=False))
    request_id: str = _id()
    request_hash: str = _string(HASH_LENGTH)
    previous_hash: str = _string(HASH_LENGTH)
    hash: str = _string(HASH_LENGTH)
    recorded_at_us: int = _integer()


class AccountRow(LedgerTable, table=True):
    """A user's position and the head of the user's hash chain."""

    __tablename__: ClassVar[Any] = "account"
    __table_args__ = (
        CheckConstraint("waiver_capacity_minor >= 0", name="capacity_not_negative"),
        CheckConstraint("held_minor >= 0", name="held_not_negative"),
        CheckConstraint("open_hold_count >= 0", name="open_hold_count_not_negative"),
        CheckConstraint("outstanding_minor >= 0", name="outstanding_not_negative"),
        CheckConstraint(
            "on_time_count >= 0 AND late_up_to_30_days_count >= 0"
            " AND late_over_30_days_count >= 0 AND defaulted_count >= 0 AND fulfilled_count >= 0",
            name="counts_not_negative",
        ),
        CheckConstraint("last_user_sequence >= 0", name="last_user_sequence_not_negative"),
    )
    user_id: str = Field(sa_column=Column(String(ID_LENGTH), primary_key=True))
    currency_code: str = _string(3)
    waiver_capacity_minor: int = _integer()
    held_minor: int = _integer()
    open_hold_count: int = _integer()
    outstanding_minor: int = _integer()
    on_time_count: int = _integer()
    late_up_to_30_days_count: int = _integer()
    late_over_30_days_count: int = _integer()
    defaulted_count: int = _integer()
    fulfilled_count: int = _integer()
    last_user_sequence: int = _integer()
    last_hash: str = _string(HASH_LENGTH)
    # The consent to be scored (NOT_GIVEN, GRANTED, WITHDRAWN) and when it began. Added by
    # migration 0004, whose default stands for the accounts that existed then.
    consent_state: str = Field(
        sa_column=Column(String(16), nullable=False, server_default="NOT_GIVEN")
    )
    consent_since_us: int | None = _optional_integer()


class HoldRow(LedgerTable, table=True):
    __tablename__: ClassVar[Any] = "hold"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint(
            "captured_minor >= 0 AND captured_minor <= amount_minor", name="captured_within_amount"
        ),
        CheckConstraint("state IN ('OPEN', 'CAPTURED', 'RELEASED', 'EXPIRED')", name="state_known"),
        CheckConstraint(
            "(state = 'OPEN') = (resolved_at_us IS NULL)", name="resolved_exactly_when_not_open"
        ),
        CheckConstraint("expires_at_us > placed_at_us", name="expires_after_placed"),
        Index(None, "user_id", "state"),
        # The sweeper's look-up; holds leave this index once resolved, so it stays small.
        Index(
            "ix_hold_open_expires_at_us",
            "expires_at_us",
            sqlite_where=text("state = 'OPEN'"),
            postgresql_where=text("state = 'OPEN'"),
        ),
    )
    hold_id: str = Field(sa_column=Column(String(ID_LENGTH), primary_key=True))
    user_id: str = _id(ForeignKey("account.user_id"))
    currency_code: str = _string(3)
    amount_minor: int = _integer()
    state: str = _string(16)
    reference: str = _string(ID_LENGTH)
    placed_at_us: int = _integer()
    expires_at_us: int = _integer()
    captured_minor: int = _integer()
    resolved_at_us: int | None = _optional_integer()
    obligation_id: str = _string(ID_LENGTH)
    fulfilled: bool = Field(sa_column=Column(Boolean, nullable=False))


class HoldResolutionRow(LedgerTable, table=True):
    """One row per resolved hold; its primary key makes a second resolution impossible."""

    __tablename__: ClassVar[Any] = "hold_resolution"
    __table_args__ = (
        CheckConstraint(
            "resolution IN ('CAPTURED', 'RELEASED', 'EXPIRED')", name="resolution_known"
        ),
    )
    hold_id: str = Field(
        sa_column=Column(String(ID_LENGTH), ForeignKey("hold.hold_id"), primary_key=True)
    )
    resolution: str = _string(16)
    resolved_at_us: int = _integer()


class ObligationRow(LedgerTable, table=True):
    __tablename__: ClassVar[Any] = "obligation"
    __table_args__ = (
        # Zero, not only positive: ReduceObligation may waive all of what was not yet paid.
        CheckConstraint("amount_due_minor >= 0", name="amount_due_not_negative"),
        CheckConstraint(
            "amount_paid_minor >= 0 AND amount_paid_minor <= amount_due_minor",
            name="paid_within_due",
        ),
        CheckConstraint("state IN ('OPEN', 'CLOSED')", name="state_known"),
        CheckConstraint(
            "outcome IS NULL OR outcome IN ('ON_TIME', 'LATE', 'DEFAULTED')", name="outcome_known"
        ),
        CheckConstraint("(state = 'CLOSED') = (outcome IS NOT NULL)", name="outcome_when_closed"),
        CheckConstraint("days_late >= 0", name="days_late_not_negative"),
        Index(None, "user_id", "created_at_us"),
    )
    obligation_id: str = Field(sa_column=Column(String(ID_LENGTH), primary_key=True))
    user_id: str = _id(ForeignKey("account.user_id"))
    currency_code: str = _string(3)
    amount_due_minor: int = _integer()
    amount_paid_minor: int = _integer()
    due_at_us: int = _integer()
    purpose: str = _string(256)
    reference: str = _string(ID_LENGTH)
    created_at_us: int = _integer()
    hold_id: str = _string(ID_LENGTH)
    state: str = _string(16)
    outcome: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    days_late: int = Field(sa_column=Column(Integer, nullable=False))
    closed_at_us: int | None = _optional_integer()
    # The user's own statement on the record, the latest attached (empty when none). Added by
    # migration 0004, whose default stands for the obligations that existed then.
    attached_statement: str = Field(sa_column=Column(Text, nullable=False, server_default=""))
    attached_statement_at_us: int | None = _optional_integer()


class StatementRow(LedgerTable, table=True):
    __tablename__: ClassVar[Any] = "statement"
    __table_args__ = (
        CheckConstraint("month BETWEEN 1 AND 12", name="month_in_year"),
        CheckConstraint("amount_paid_minor >= 0", name="amount_paid_not_negative"),
        CheckConstraint(
            "repayment_status IN ('NO_USE', 'PAID_IN_FULL', 'REVOLVING', 'LATE')",
            name="repayment_status_known",
        ),
        CheckConstraint("months_late BETWEEN 0 AND 99", name="months_late_in_range"),
    )
    user_id: str = Field(
        sa_column=Column(String(ID_LENGTH), ForeignKey("account.user_id"), primary_key=True)
    )
    year: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    month: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    partner_id: str = _id()
    currency_code: str = _string(3)
    balance_minor: int = _integer()
    amount_paid_minor: int = _integer()
    repayment_status: str = _string(16)
    months_late: int = Field(sa_column=Column(Integer, nullable=False))
    # The first instant after the month: what a history "as of" a time compares against.
    period_end_us: int = _integer()


class CreditLineRow(LedgerTable, table=True):
    __tablename__: ClassVar[Any] = "credit_line"
    __table_args__ = (CheckConstraint("amount_minor > 0", name="amount_positive"),)
    user_id: str = Field(
        sa_column=Column(String(ID_LENGTH), ForeignKey("account.user_id"), primary_key=True)
    )
    partner_id: str = _id()
    currency_code: str = _string(3)
    amount_minor: int = _integer()


class RequestRecordRow(LedgerTable, table=True):
    """Idempotency: each mutation's request id, what it asked (hash), what it answered, and how
    many journal entries it wrote (which VerifyChain compares with the entries carrying its id)."""

    __tablename__: ClassVar[Any] = "request_record"
    __table_args__ = (
        CheckConstraint("outcome IN ('SUCCEEDED', 'FAILED')", name="outcome_known"),
        CheckConstraint("entry_count >= 0", name="entry_count_not_negative"),
        CheckConstraint("outcome = 'SUCCEEDED' OR entry_count = 0", name="refusal_writes_nothing"),
    )
    request_id: str = Field(sa_column=Column(String(ID_LENGTH), primary_key=True))
    request_hash: str = _string(HASH_LENGTH)
    method: str = _string(64)
    outcome: str = _string(16)
    response_json: str = Field(sa_column=Column(Text, nullable=False))
    error_reason: str = _string(64)
    error_message: str = Field(sa_column=Column(Text, nullable=False))
    recorded_at_us: int = _integer()
    entry_count: int = _integer()


def table_of(model: type[LedgerTable]) -> Table:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


journal_head = table_of(JournalHeadRow)
journal_entry = table_of(JournalEntryRow)
account = table_of(AccountRow)
hold = table_of(HoldRow)
hold_resolution = table_of(HoldResolutionRow)
obligation = table_of(ObligationRow)
statement = table_of(StatementRow)
credit_line = table_of(CreditLineRow)
request_record = table_of(RequestRecordRow)
