"""The storage ports over SQLAlchemy Core, for SQLite and PostgreSQL.

Round trips are what a write costs on PostgreSQL, so a write transaction (a batch of requests)
takes two whatever its size (see `pipeline`): BEGIN with one statement that locks everything and
looks up the request ids (`lock_statement`); then, after any loads a rule asks for, one statement
that writes every projection and request record, one that appends the journal entries
(`bulk_statement`), and COMMIT; `lock` is therefore a write transaction's first step. On SQLite,
where statements cost no round trip, plain per-table statements keep the code simple.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    ARRAY,
    Connection,
    Table,
    Text,
    any_,
    bindparam,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError, TimeoutError as PoolTimeoutError

from services.common.errors import Unavailable
from services.ledger.domain import reasons
from services.ledger.domain.journal import JournalEntry, NewEntry
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
from services.ledger.service.ports import (
    JournalSize,
    Locked,
    StateChanges,
    StorageConflict,
    StoredRequest,
)
from services.ledger.storage import rows
from services.ledger.storage.bulk_statement import bulk_write, create_accounts
from services.ledger.storage.engine import TransactionMode, create_ledger_engine, is_sqlite
from services.ledger.storage.lock_statement import LOCK_STATEMENT, add_locked_row
from services.ledger.storage.pipeline import (
    UNKNOWN_PREPARED_STATEMENT,
    begin_with,
    execute_and_commit,
)
from services.ledger.storage.tables import (
    account,
    credit_line,
    hold,
    hold_resolution,
    journal_entry,
    journal_head,
    obligation,
    request_record,
    statement,
)

# A deadlock, a serialization failure: PostgreSQL rolled the transaction back for us. A
# prepared statement gone from the connection: `pipeline` prepares it again on the next try.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", UNKNOWN_PREPARED_STATEMENT})
_UNIQUE_VIOLATION = "23505"
# Two attempts of the same request raced past the look-up; the loser retries and finds the
# winner's answer.
_REQUEST_RACE_CONSTRAINTS = frozenset({"pk_request_record"})
_CONNECTION_SQLSTATE_PREFIXES = ("08", "57P")

# Keyed updates executed many rows at a time; the key parameter is named apart from the
# column so the column can also be set.
_UPDATE_ACCOUNT = update(account).where(account.c.user_id == bindparam("key_user_id"))
_UPDATE_HOLD = update(hold).where(hold.c.hold_id == bindparam("key_hold_id"))
_UPDATE_OBLIGATION = update(obligation).where(
    obligation.c.obligation_id == bindparam("key_obligation_id")
)
_UPDATE_STATEMENT = update(statement).where(
    (statement.c.user_id == bindparam("key_user_id"))
    & (statement.c.year == bindparam("key_year"))
    & (statement.c.month == bindparam("key_month"))
)
_UPDATE_CREDIT_LINE = update(credit_line).where(credit_line.c.user_id == bindparam("key_user_id"))


class SqlLedgerStorage:
    """The ledger's storage in one database; two engines, one for writes and one for reads,
    each with its own pool and transaction set-up (see `engine`)."""

    def __init__(
        self,
        database_url: str,
        *,
        pool_size: int = 5,
        pool_timeout_s: float = 30.0,
        write_concurrency: int = 0,
    ) -> None:
        self._sqlite = is_sqlite(database_url)
        # One batch at a time by default, on both databases: SQLite has a single writer anyway,
        # and on PostgreSQL a second batch mostly waits for the first's journal head lock while
        # splitting the waiting requests into smaller batches (measured slower).
        self.write_concurrency = write_concurrency or 1
        self._write_engine = create_ledger_engine(
            database_url, TransactionMode.WRITE, pool_size=pool_size, pool_timeout_s=pool_timeout_s
        )
        self._read_engine = create_ledger_engine(
            database_url, TransactionMode.READ, pool_size=pool_size, pool_timeout_s=pool_timeout_s
        )

    @contextmanager
    def write(self) -> Iterator[SqlWriteTransaction]:
        with (
            _translated_errors(),
            self._write_engine.connect() as connection,
            connection.begin(),
        ):
            yield SqlWriteTransaction(connection, sqlite_dialect=self._sqlite)

    @contextmanager
    def read(self) -> Iterator[SqlReadTransaction]:
        with _translated_errors(), self._read_engine.connect() as connection, connection.begin():
            yield SqlReadTransaction(connection, sqlite_dialect=self._sqlite)

    def close(self) -> None:
        self._write_engine.dispose()
        self._read_engine.dispose()


@contextmanager
def _translated_errors() -> Iterator[None]:
    try:
        yield
    except DBAPIError as error:
        if _is_retryable(error):
            raise StorageConflict(str(error.orig)) from error
        if _is_connection_failure(error):
            raise _unavailable() from error
        raise
    except PoolTimeoutError as error:
        raise _unavailable() from error


def _unavailable() -> Unavailable:
    return Unavailable(
        "the ledger's database is unavailable; retry with the same request_id",
        reason=reasons.STORAGE_UNAVAILABLE,
    )


def _is_retryable(error: DBAPIError) -> bool:
    original = error.orig
    if isinstance(original, sqlite3.OperationalError):
        # BEGIN IMMEDIATE waited out the busy timeout behind another writer.
        return "locked" in str(original) or "busy" in str(original)
    if isinstance(original, sqlite3.IntegrityError):
        return "request_record.request_id" in str(original)
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return True
    if sqlstate == _UNIQUE_VIOLATION:
        diagnostics = getattr(original, "diag", None)
        return bool(getattr(diagnostics, "constraint_name", None) in _REQUEST_RACE_CONSTRAINTS)
    return False


def _is_connection_failure(error: DBAPIError) -> bool:
    if error.connection_invalidated:
        return True
    sqlstate: str | None = getattr(error.orig, "sqlstate", None)
    if sqlstate is None:
        # psycopg reports a refused or broken connection without a SQLSTATE.
        return not isinstance(error.orig, sqlite3.Error) and "connection" in str(error.orig)
    return sqlstate.startswith(_CONNECTION_SQLSTATE_PREFIXES)


class SqlWriteTransaction:
    def __init__(self, connection: Connection, *, sqlite_dialect: bool) -> None:
        self._connection = connection
        self._sqlite = sqlite_dialect

    def _one_of(self, column: Any, values: Sequence[str]) -> Any:
        return _one_of(column, values, self._sqlite)

    def lock(
        self,
        hold_ids: Sequence[str],
        obligation_ids: Sequence[str],
        user_ids: Sequence[str],
        request_ids: Sequence[str],
    ) -> Locked:
        if self._sqlite:
            # BEGIN IMMEDIATE already holds the whole database; these are plain reads.
            holds = self._select_holds(hold_ids)
            obligations = self._select_obligations(obligation_ids)
            owners = [hold.user_id for hold in holds] + [item.user_id for item in obligations]
            states = self._lock_accounts(sorted({*user_ids, *owners}))
            return Locked(holds, obligations, states, self._find_requests(request_ids))
        return self._lock_in_one_statement(hold_ids, obligation_ids, user_ids, request_ids)

    def _lock_in_one_statement(
        self,
        hold_ids: Sequence[str],
        obligation_ids: Sequence[str],
        user_ids: Sequence[str],
        request_ids: Sequence[str],
    ) -> Locked:
        """PostgreSQL: the transaction begun, holds, obligations and existing accounts locked,
        and requests looked up, in one round trip; only accounts still missing take two more."""
        found = begin_with(
            self._connection,
            LOCK_STATEMENT,
            {
                "hold_ids": list(hold_ids),
                "obligation_ids": list(obligation_ids),
                "user_ids": list(user_ids),
                "request_ids": list(request_ids),
            },
        )
        locked = Locked(holds=[], obligations=[], states={}, requests={})
        for kind, row_json in found:
            add_locked_row(locked, kind, row_json)
        owners = {hold.user_id for hold in locked.holds}
        owners |= {item.user_id for item in locked.obligations}
        missing = sorted({*user_ids, *owners} - locked.states.keys())
        if missing:
            self._create_missing_accounts(missing)
            locked.states |= self._select_accounts_for_update(missing)
        return locked

    def _find_requests(self, request_ids: Sequence[str]) -> dict[str, StoredRequest]:
        if not request_ids:
            return {}
        found = self._connection.execute(
            select(request_record).where(self._one_of(request_record.c.request_id, request_ids))
        )
        return {row.request_id: rows.request_from(row) for row in found}

    def _select_holds(self, hold_ids: Sequence[str]) -> list[Hold]:
        if not hold_ids:
            return []
        found = self._connection.execute(
            select(hold).where(self._one_of(hold.c.hold_id, hold_ids)).order_by(hold.c.hold_id)
        )
        return [rows.hold_from(row) for row in found]

    def _select_obligations(self, obligation_ids: Sequence[str]) -> list[Obligation]:
        if not obligation_ids:
            return []
        found = self._connection.execute(
            select(obligation)
            .where(self._one_of(obligation.c.obligation_id, obligation_ids))
            .order_by(obligation.c.obligation_id)
        )
        return [rows.obligation_from(row) for row in found]

    def _lock_accounts(self, user_ids: Sequence[str]) -> dict[str, UserState]:
        if not user_ids:
            return {}
        locked = self._select_accounts_for_update(user_ids)
        missing = [user_id for user_id in user_ids if user_id not in locked]
        if missing:
            self._create_missing_accounts(missing)
            locked |= self._select_accounts_for_update(missing)
        assert locked.keys() == set(user_ids), "every account exists once created"
        return locked

    def _select_accounts_for_update(self, user_ids: Sequence[str]) -> dict[str, UserState]:
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

    def _create_missing_accounts(self, user_ids: Sequence[str]) -> None:
        if not self._sqlite:
            # One statement, not one per account as an executemany would send.
            self._connection.execute(*create_accounts(user_ids))
            return
        statement_ = sqlite.insert(account).on_conflict_do_nothing(index_elements=["user_id"])
        self._connection.execute(
            statement_,
            [rows.account_values(Account(user_id=user_id), ChainHead()) for user_id in user_ids],
        )

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

    def persist(
        self,
        changes: StateChanges,
        requests: Sequence[StoredRequest],
        entries: Sequence[NewEntry],
    ) -> None:
        if self._sqlite:
            # Statements cost no round trip on SQLite; one per table keeps it plain.
            self._save_changes(changes)
            self._insert(request_record, [rows.request_values(request) for request in requests])
            if entries:
                self._append_entries(entries)
            return
        execute_and_commit(self._connection, bulk_write(changes, requests, entries))

    def _save_changes(self, changes: StateChanges) -> None:
        self._update(
            _UPDATE_ACCOUNT,
            [
                _keyed(rows.account_values(account_record, chain), "user_id")
                for account_record, chain in changes.accounts
            ],
        )
        self._insert(hold, [rows.hold_values(record) for record in changes.new_holds])
        self._update(
            _UPDATE_HOLD,
            [_keyed(rows.hold_values(record), "hold_id") for record in changes.changed_holds],
        )
        self._insert(
            hold_resolution,
            [rows.hold_resolution_values(record) for record in changes.resolved_holds],
        )
        self._insert(
            obligation, [rows.obligation_values(record) for record in changes.new_obligations]
        )
        self._update(
            _UPDATE_OBLIGATION,
            [
                _keyed(rows.obligation_values(record), "obligation_id")
                for record in changes.changed_obligations
            ],
        )
        self._insert(
            statement, [rows.statement_values(record) for record in changes.new_statements]
        )
        self._update(
            _UPDATE_STATEMENT,
            [
                _keyed(rows.statement_values(record), "user_id", "year", "month")
                for record in changes.changed_statements
            ],
        )
        self._insert(
            credit_line, [rows.credit_line_values(record) for record in changes.new_credit_lines]
        )
        self._update(
            _UPDATE_CREDIT_LINE,
            [
                _keyed(rows.credit_line_values(record), "user_id")
                for record in changes.changed_credit_lines
            ],
        )

    def _append_entries(self, entries: Sequence[NewEntry]) -> None:
        last_global_sequence: int = self._connection.execute(
            update(journal_head)
            .where(journal_head.c.id == 1)
            .values(last_global_sequence=journal_head.c.last_global_sequence + len(entries))
            .returning(journal_head.c.last_global_sequence)
        ).scalar_one()
        first_global_sequence = last_global_sequence - len(entries) + 1
        self._connection.execute(
            insert(journal_entry),
            [
                rows.entry_values(entry, first_global_sequence + offset)
                for offset, entry in enumerate(entries)
            ],
        )

    def _insert(self, table: Table, values: list[dict[str, Any]]) -> None:
        if values:
            self._connection.execute(insert(table), values)

    def _update(self, statement_: Any, values: list[dict[str, Any]]) -> None:
        if values:
            self._connection.execute(statement_, values)


def _one_of(column: Any, values: Sequence[str], sqlite_dialect: bool) -> Any:
    """`column IN (...)` on SQLite; `column = ANY(array)` on PostgreSQL, whose text does not
    grow with the list, so the statement is parsed and prepared once, not once per length."""
    if sqlite_dialect:
        return column.in_(values)
    return column == any_(literal(list(values), type_=ARRAY(Text)))


def _keyed(values: dict[str, Any], *key_columns: str) -> dict[str, Any]:
    """Row values for a keyed update: key columns become `key_*` parameters, not SET targets."""
    keyed = {f"key_{column}": values.pop(column) for column in key_columns}
    return values | keyed


class SqlReadTransaction:
    def __init__(self, connection: Connection, *, sqlite_dialect: bool) -> None:
        self._connection = connection
        self._sqlite = sqlite_dialect

    def _one_of(self, column: Any, values: Sequence[str]) -> Any:
        return _one_of(column, values, self._sqlite)

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

    def journal_size(self) -> JournalSize:
        entry_count = self._connection.execute(
            select(func.count()).select_from(journal_entry)
        ).scalar_one()
        head_global_sequence = self._connection.execute(
            select(journal_head.c.last_global_sequence).where(journal_head.c.id == 1)
        ).scalar_one()
        return JournalSize(entry_count=entry_count, head_global_sequence=head_global_sequence)
