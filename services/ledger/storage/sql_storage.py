"""The ledger's storage over SQLAlchemy Core: what every database shares, and
`open_ledger_storage`, which picks the implementation for a database URL once, when the storage
is built.

Shared here: the storage's two engines, the read transaction, the loads a rule asks for inside a
write transaction, and the translation of database errors into the port's terms. Each database
implements the rest of a write transaction, its first step (`lock`) and its last (`persist`),
its own way: `sqlite` and `postgres`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, event, func, or_, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, TimeoutError as PoolTimeoutError

from services.common.errors import Unavailable
from services.ledger.domain import reasons
from services.ledger.domain.checkpoints import LEDGER_USER_ID, ChainLeaf
from services.ledger.domain.journal import OWN_ENTRY_TYPES, JournalEntry, NewEntry
from services.ledger.domain.records import (
    Account,
    ChainHead,
    CreditLine,
    Hold,
    HoldState,
    Obligation,
    Statement,
    UserState,
)
from services.ledger.domain.verification import RequestEntries
from services.ledger.service.ports import (
    JournalSize,
    Locked,
    StateChanges,
    StorageConflict,
    StoredRequest,
)
from services.ledger.storage import rows
from services.ledger.storage.engine import TransactionMode, create_ledger_engine
from services.ledger.storage.tables import (
    account,
    credit_line,
    hold,
    journal_entry,
    journal_head,
    obligation,
    request_record,
    statement,
)

# `column` is one of `values`, in the form the database handles best.
OneOf = Callable[[Any, Sequence[str]], ColumnElement[bool]]

# Called with the database driver's connection each time a write transaction takes one from the
# pool, before the transaction begins.
ConnectionHook = Callable[[Any], None]


def open_ledger_storage(
    database_url: str,
    *,
    pool_size: int = 5,
    pool_timeout_s: float = 30.0,
    write_concurrency: int = 0,
    on_write_connection: ConnectionHook | None = None,
) -> SqlLedgerStorage:
    """The ledger's storage in the database the URL names, SQLite or PostgreSQL (see
    `SqlLedgerStorage` for the options)."""
    # Imported here, not at the top: both implementations build on this module.
    from services.ledger.storage.postgres import PostgresLedgerStorage
    from services.ledger.storage.sqlite import SqliteLedgerStorage

    implementations: dict[str, type[SqlLedgerStorage]] = {
        "sqlite": SqliteLedgerStorage,
        "postgresql": PostgresLedgerStorage,
    }
    backend = make_url(database_url).get_backend_name()
    if backend not in implementations:
        raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")
    return implementations[backend](
        database_url,
        pool_size=pool_size,
        pool_timeout_s=pool_timeout_s,
        write_concurrency=write_concurrency,
        on_write_connection=on_write_connection,
    )


class SqlLedgerStorage(ABC):
    """The ledger's storage in one database; two engines, one for writes and one for reads,
    each with its own pool and transaction set-up (see `engine`).

    `write_concurrency` is how many write transactions run at once (0 means 1).
    `on_write_connection` is called with the driver's connection each time a write transaction
    takes one from the pool: a place to act on the connection as something between the ledger
    and its database would (a connection pooler resetting sessions, say), which tests use to
    play that part.
    """

    def __init__(
        self,
        database_url: str,
        *,
        pool_size: int = 5,
        pool_timeout_s: float = 30.0,
        write_concurrency: int = 0,
        on_write_connection: ConnectionHook | None = None,
    ) -> None:
        # One batch at a time unless configured otherwise, whatever the database (see each
        # implementation for why one is enough there).
        self.write_concurrency = write_concurrency or 1
        self._write_engine = create_ledger_engine(
            database_url, TransactionMode.WRITE, pool_size=pool_size, pool_timeout_s=pool_timeout_s
        )
        if on_write_connection is not None:
            hook = on_write_connection

            @event.listens_for(self._write_engine, "checkout")
            def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
                hook(dbapi_connection)

        self._read_engine = create_ledger_engine(
            database_url, TransactionMode.READ, pool_size=pool_size, pool_timeout_s=pool_timeout_s
        )

    @contextmanager
    def write(self) -> Iterator[SqlWriteTransaction]:
        with (
            self._translated_errors(),
            self._write_engine.connect() as connection,
            connection.begin(),
        ):
            yield self._write_transaction(connection)

    @contextmanager
    def read(self) -> Iterator[SqlReadTransaction]:
        with (
            self._translated_errors(),
            self._read_engine.connect() as connection,
            connection.begin(),
        ):
            yield self._read_transaction(connection)

    def close(self) -> None:
        self._write_engine.dispose()
        self._read_engine.dispose()

    # What each database does its own way

    @abstractmethod
    def _write_transaction(self, connection: Connection) -> SqlWriteTransaction:
        """The database's write transaction over a connection of the write pool."""

    @abstractmethod
    def _read_transaction(self, connection: Connection) -> SqlReadTransaction:
        """A read transaction over a connection of the read pool, with the database's `OneOf`."""

    @abstractmethod
    def _lost_a_race(self, error: DBAPIError) -> bool:
        """Whether the error is a race the database could not order (the transaction was rolled
        back, and running it again may succeed)."""

    @abstractmethod
    def _lost_the_database(self, error: DBAPIError) -> bool:
        """Whether the error says the database cannot be reached."""

    # Errors in the port's terms

    @contextmanager
    def _translated_errors(self) -> Iterator[None]:
        try:
            yield
        except DBAPIError as error:
            if self._lost_a_race(error):
                raise StorageConflict(str(error.orig)) from error
            if error.connection_invalidated or self._lost_the_database(error):
                raise _unavailable() from error
            raise
        except PoolTimeoutError as error:
            raise _unavailable() from error


def _unavailable() -> Unavailable:
    return Unavailable(
        "the ledger's database is unavailable; retry with the same request_id",
        reason=reasons.STORAGE_UNAVAILABLE,
    )


class SqlWriteTransaction(ABC):
    """A write transaction over one connection: its first step (`lock`) and its last
    (`persist`) are each database's own; the loads in between are the same everywhere."""

    def __init__(self, connection: Connection, one_of: OneOf) -> None:
        self._connection = connection
        self._one_of = one_of

    @abstractmethod
    def lock(
        self,
        hold_ids: Sequence[str],
        obligation_ids: Sequence[str],
        user_ids: Sequence[str],
        request_ids: Sequence[str],
    ) -> Locked:
        """See `ports.WriteTransaction.lock`."""

    @abstractmethod
    def persist(
        self,
        changes: StateChanges,
        requests: Sequence[StoredRequest],
        entries: Sequence[NewEntry],
    ) -> None:
        """See `ports.WriteTransaction.persist`."""

    def load_open_holds(self, user_id: str) -> list[Hold]:
        found = self._connection.execute(
            select(hold).where((hold.c.user_id == user_id) & (hold.c.state == HoldState.OPEN.value))
        )
        return [rows.hold_from(row) for row in found]

    def load_statements(self, user_ids: Sequence[str]) -> list[Statement]:
        found = self._connection.execute(
            select(statement).where(self._one_of(statement.c.user_id, user_ids))
        )
        return [rows.statement_from(row) for row in found]

    def load_credit_lines(self, user_ids: Sequence[str]) -> list[CreditLine]:
        found = self._connection.execute(
            select(credit_line).where(self._one_of(credit_line.c.user_id, user_ids))
        )
        return [rows.credit_line_from(row) for row in found]

    def _select_accounts_for_update(self, user_ids: Sequence[str]) -> dict[str, UserState]:
        """The users' existing accounts, locked in user id order where the database locks
        rows."""
        found = self._connection.execute(
            select(account)
            .where(self._one_of(account.c.user_id, user_ids))
            .order_by(account.c.user_id)
            .with_for_update()
        ).all()
        states = {}
        for row in found:
            account_record, chain = rows.account_from(row)
            states[account_record.user_id] = UserState(account=account_record, chain=chain)
        return states


class SqlReadTransaction:
    def __init__(self, connection: Connection, one_of: OneOf) -> None:
        self._connection = connection
        self._one_of = one_of

    def get_account(self, user_id: str) -> tuple[Account, ChainHead] | None:
        row = self._connection.execute(select(account).where(account.c.user_id == user_id)).first()
        return None if row is None else rows.account_from(row)

    def open_holds_summary(self, user_id: str, now_us: int) -> tuple[int, int]:
        row = self._connection.execute(
            select(func.coalesce(func.sum(hold.c.amount_minor), 0), func.count()).where(
                (hold.c.user_id == user_id)
                & (hold.c.state == HoldState.OPEN.value)
                & (hold.c.expires_at_us > now_us)
            )
        ).one()
        return int(row[0]), int(row[1])

    def get_hold(self, hold_id: str) -> Hold | None:
        row = self._connection.execute(select(hold).where(hold.c.hold_id == hold_id)).first()
        return None if row is None else rows.hold_from(row)

    def get_obligation(self, obligation_id: str) -> Obligation | None:
        row = self._connection.execute(
            select(obligation).where(obligation.c.obligation_id == obligation_id)
        ).first()
        return None if row is None else rows.obligation_from(row)

    def get_credit_line(self, user_id: str) -> CreditLine | None:
        row = self._connection.execute(
            select(credit_line).where(credit_line.c.user_id == user_id)
        ).first()
        return None if row is None else rows.credit_line_from(row)

    def statements_ended_by(self, user_id: str, as_of_us: int, limit: int) -> list[Statement]:
        found = self._connection.execute(
            select(statement)
            .where((statement.c.user_id == user_id) & (statement.c.period_end_us <= as_of_us))
            .order_by(statement.c.year.desc(), statement.c.month.desc())
            .limit(limit)
        )
        return [rows.statement_from(row) for row in found]

    def obligations_created_by(self, user_id: str, as_of_us: int, limit: int) -> list[Obligation]:
        found = self._connection.execute(
            select(obligation)
            .where((obligation.c.user_id == user_id) & (obligation.c.created_at_us <= as_of_us))
            .order_by(obligation.c.created_at_us.desc(), obligation.c.obligation_id.desc())
            .limit(limit)
        )
        return [rows.obligation_from(row) for row in found]

    def global_sequence_of(self, user_id: str, user_sequence: int) -> int:
        global_sequence: int = self._connection.execute(
            select(journal_entry.c.global_sequence).where(
                (journal_entry.c.user_id == user_id)
                & (journal_entry.c.user_sequence == user_sequence)
            )
        ).scalar_one()
        return global_sequence

    def entries_after(self, after_global_sequence: int, limit: int) -> list[JournalEntry]:
        found = self._connection.execute(
            select(journal_entry)
            .where(journal_entry.c.global_sequence > after_global_sequence)
            .order_by(journal_entry.c.global_sequence)
            .limit(limit)
        )
        return [rows.entry_from(row) for row in found]

    def user_entries_after(
        self, user_id: str, after_user_sequence: int, limit: int
    ) -> list[JournalEntry]:
        # Within one user, user sequence and global sequence grow together, so this is global
        # order too, read through the (user_id, user_sequence) index.
        found = self._connection.execute(
            select(journal_entry)
            .where(
                (journal_entry.c.user_id == user_id)
                & (journal_entry.c.user_sequence > after_user_sequence)
            )
            .order_by(journal_entry.c.user_sequence)
            .limit(limit)
        )
        return [rows.entry_from(row) for row in found]

    def expired_open_holds(self, now_us: int, limit: int) -> list[tuple[str, str]]:
        found = self._connection.execute(
            select(hold.c.hold_id, hold.c.user_id)
            .where((hold.c.state == HoldState.OPEN.value) & (hold.c.expires_at_us <= now_us))
            .order_by(hold.c.expires_at_us, hold.c.hold_id)
            .limit(limit)
        )
        return [(row.hold_id, row.user_id) for row in found]

    def users_after(self, after_user_id: str, limit: int) -> list[str]:
        found = self._connection.execute(
            select(account.c.user_id)
            .where(account.c.user_id > after_user_id)
            .order_by(account.c.user_id)
            .limit(limit)
        )
        return [row.user_id for row in found]

    def entries_of_users(self, user_ids: Sequence[str]) -> Iterator[JournalEntry]:
        found = self._connection.execute(
            select(journal_entry)
            .where(self._one_of(journal_entry.c.user_id, user_ids))
            .order_by(journal_entry.c.user_id, journal_entry.c.user_sequence)
        )
        for row in found:
            yield rows.entry_from(row)

    def stored_states(self, user_ids: Sequence[str]) -> dict[str, UserState]:
        states: dict[str, UserState] = {}
        for row in self._connection.execute(
            select(account).where(self._one_of(account.c.user_id, user_ids))
        ):
            account_record, chain = rows.account_from(row)
            states[account_record.user_id] = UserState(account=account_record, chain=chain)
        # Records of a user whose account row is gone are left out here; the verifier reports
        # the missing account itself.
        for row in self._connection.execute(
            select(hold).where(self._one_of(hold.c.user_id, user_ids))
        ):
            if row.user_id in states:
                states[row.user_id].holds[row.hold_id] = rows.hold_from(row)
        for row in self._connection.execute(
            select(obligation).where(self._one_of(obligation.c.user_id, user_ids))
        ):
            if row.user_id in states:
                states[row.user_id].obligations[row.obligation_id] = rows.obligation_from(row)
        for row in self._connection.execute(
            select(statement).where(self._one_of(statement.c.user_id, user_ids))
        ):
            if row.user_id in states:
                record = rows.statement_from(row)
                states[row.user_id].statements[record.period] = record
        for row in self._connection.execute(
            select(credit_line).where(self._one_of(credit_line.c.user_id, user_ids))
        ):
            if row.user_id in states:
                states[row.user_id].credit_line = rows.credit_line_from(row)
        return states

    def first_request_disagreement(self, user_id: str | None) -> RequestEntries | None:
        """The request id, earliest in the journal, whose record and entries may disagree (see
        `verification.request_record_mismatch`, which decides). With `user_id`, only that
        user's entries are held against their records; without, every entry and record.

        The database groups the journal by request id and joins the records in one pass; only
        a disagreeing request comes back."""
        own_types = sorted(entry_type.value for entry_type in OWN_ENTRY_TYPES)
        condition: ColumnElement[bool] = journal_entry.c.entry_type.not_in(own_types)
        if user_id is not None:
            condition = condition & (journal_entry.c.user_id == user_id)
        entries = (
            select(
                journal_entry.c.request_id,
                func.count().label("entry_count"),
                func.min(journal_entry.c.request_hash).label("min_hash"),
                func.max(journal_entry.c.request_hash).label("max_hash"),
                func.min(journal_entry.c.global_sequence).label("first_global_sequence"),
            )
            .where(condition)
            .group_by(journal_entry.c.request_id)
            .subquery()
        )
        record = request_record
        # The same conditions `verification.request_record_mismatch` decides on, so that the
        # first row found is a real disagreement: one user's entries may be fewer than its
        # record names (a partner statement batch writes for many users), never more.
        differs = or_(
            record.c.request_id.is_(None),
            entries.c.min_hash != record.c.request_hash,
            entries.c.max_hash != record.c.request_hash,
            entries.c.entry_count > record.c.entry_count,
        )
        if user_id is None:
            joined = entries.join(record, record.c.request_id == entries.c.request_id, full=True)
            differs = or_(
                differs,
                entries.c.entry_count < record.c.entry_count,
                and_(entries.c.request_id.is_(None), record.c.entry_count != 0),
            )
        else:
            joined = entries.outerjoin(record, record.c.request_id == entries.c.request_id)
        row = self._connection.execute(
            select(
                func.coalesce(entries.c.request_id, record.c.request_id).label("request_id"),
                entries.c.entry_count,
                entries.c.min_hash,
                entries.c.max_hash,
                entries.c.first_global_sequence,
                record.c.request_id.label("record_request_id"),
                record.c.request_hash.label("record_hash"),
                record.c.entry_count.label("record_entry_count"),
            )
            .select_from(joined)
            .where(differs)
            .order_by(entries.c.first_global_sequence.nulls_last(), "request_id")
            .limit(1)
        ).first()
        if row is None:
            return None
        first_entry = None
        if row.first_global_sequence is not None:
            first = self._connection.execute(
                select(journal_entry.c.user_id, journal_entry.c.user_sequence).where(
                    journal_entry.c.global_sequence == row.first_global_sequence
                )
            ).one()
            first_entry = (first.user_id, first.user_sequence, row.first_global_sequence)
        return RequestEntries(
            request_id=row.request_id,
            entry_count=row.entry_count or 0,
            entry_request_hashes=frozenset(
                value for value in (row.min_hash, row.max_hash) if value is not None
            ),
            first_entry=first_entry,
            record=(
                None if row.record_request_id is None else (row.record_hash, row.record_entry_count)
            ),
        )

    def head_global_sequence(self) -> int:
        head: int = self._connection.execute(
            select(journal_head.c.last_global_sequence).where(journal_head.c.id == 1)
        ).scalar_one()
        return head

    def account_chain_heads(self) -> list[ChainLeaf]:
        found = self._connection.execute(
            select(account.c.user_id, account.c.last_user_sequence, account.c.last_hash).where(
                account.c.last_user_sequence > 0
            )
        )
        return [ChainLeaf(row.user_id, row.last_user_sequence, row.last_hash) for row in found]

    def chain_heads_at(self, global_sequence: int) -> list[ChainLeaf]:
        # Each user's highest user sequence by then, then that entry through the unique
        # (user_id, user_sequence) index: one row per user comes back, not one per entry.
        last = (
            select(
                journal_entry.c.user_id,
                func.max(journal_entry.c.user_sequence).label("user_sequence"),
            )
            .where(journal_entry.c.global_sequence <= global_sequence)
            .group_by(journal_entry.c.user_id)
            .subquery()
        )
        found = self._connection.execute(
            select(journal_entry.c.user_id, journal_entry.c.user_sequence, journal_entry.c.hash)
            .select_from(journal_entry)
            .join(
                last,
                (journal_entry.c.user_id == last.c.user_id)
                & (journal_entry.c.user_sequence == last.c.user_sequence),
            )
        )
        return [ChainLeaf(row.user_id, row.user_sequence, row.hash) for row in found]

    def checkpoint_entry(self, checkpoint_sequence: int) -> JournalEntry | None:
        query = select(journal_entry).where(journal_entry.c.user_id == LEDGER_USER_ID)
        if checkpoint_sequence:
            query = query.where(journal_entry.c.user_sequence == checkpoint_sequence)
        row = self._connection.execute(
            query.order_by(journal_entry.c.user_sequence.desc()).limit(1)
        ).first()
        return None if row is None else rows.entry_from(row)

    def journal_size(self) -> JournalSize:
        entry_count = self._connection.execute(
            select(func.count()).select_from(journal_entry)
        ).scalar_one()
        head_global_sequence = self._connection.execute(
            select(journal_head.c.last_global_sequence).where(journal_head.c.id == 1)
        ).scalar_one()
        return JournalSize(entry_count=entry_count, head_global_sequence=head_global_sequence)
