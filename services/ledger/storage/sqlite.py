"""The ledger's storage on SQLite, the embedded default.

A write transaction begins with BEGIN IMMEDIATE (see `engine`), which takes the database's one
write lock before anything else runs: from then on nothing can change under the transaction,
so locking is a matter of reading, and writers never deadlock. A statement costs a function
call, not a round trip, so each step is plain statements, one per table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, bindparam, insert, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DBAPIError

from services.ledger.domain.journal import NewEntry
from services.ledger.domain.records import Account, ChainHead, Hold, Obligation, UserState
from services.ledger.service.ports import Locked, StateChanges, StoredRequest
from services.ledger.storage import rows
from services.ledger.storage.sql_storage import (
    SqlLedgerStorage,
    SqlReadTransaction,
    SqlWriteTransaction,
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


def _one_of(column: Any, values: Sequence[str]) -> ColumnElement[bool]:
    """`column IN (...)`, one parameter per value: SQLite has no array type to pass the list
    as one."""
    one_of: ColumnElement[bool] = column.in_(values)
    return one_of


class SqliteLedgerStorage(SqlLedgerStorage):
    """More than one write transaction at once (`write_concurrency`) gains nothing here: SQLite
    has one writer, and a second transaction waits for the write lock in BEGIN IMMEDIATE."""

    def _write_transaction(self, connection: Connection) -> SqliteWriteTransaction:
        return SqliteWriteTransaction(connection)

    def _read_transaction(self, connection: Connection) -> SqlReadTransaction:
        return SqlReadTransaction(connection, _one_of)

    def _lost_a_race(self, error: DBAPIError) -> bool:
        original = error.orig
        if isinstance(original, sqlite3.OperationalError):
            # BEGIN IMMEDIATE waited out the busy timeout behind another writer.
            return "locked" in str(original) or "busy" in str(original)
        if isinstance(original, sqlite3.IntegrityError):
            # Two attempts of the same request: the loser runs again and finds the winner's
            # answer.
            return "request_record.request_id" in str(original)
        return False

    def _lost_the_database(self, error: DBAPIError) -> bool:
        # An embedded database has no connection to lose: an error is the database's answer.
        return False


class SqliteWriteTransaction(SqlWriteTransaction):
    def __init__(self, connection: Connection) -> None:
        super().__init__(connection, _one_of)

    def lock(
        self,
        hold_ids: Sequence[str],
        obligation_ids: Sequence[str],
        user_ids: Sequence[str],
        request_ids: Sequence[str],
    ) -> Locked:
        """Reads what the transaction locks, in the port's order: BEGIN IMMEDIATE already holds
        the whole database, and FOR UPDATE, which SQLite does not know, is left out."""
        holds = self._select_holds(hold_ids)
        obligations = self._select_obligations(obligation_ids)
        owners = [hold.user_id for hold in holds] + [item.user_id for item in obligations]
        states = self._lock_accounts(sorted({*user_ids, *owners}))
        return Locked(holds, obligations, states, self._find_requests(request_ids))

    def persist(
        self,
        changes: StateChanges,
        requests: Sequence[StoredRequest],
        entries: Sequence[NewEntry],
    ) -> None:
        """Writes each table with a statement of its own; the context manager commits."""
        self._save_changes(changes)
        self._insert(request_record, [rows.request_values(request) for request in requests])
        if entries:
            self._append_entries(entries)

    # Locking

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
            self._create_accounts(missing)
            locked |= self._select_accounts_for_update(missing)
        assert locked.keys() == set(user_ids), "every account exists once created"
        return locked

    def _create_accounts(self, user_ids: Sequence[str]) -> None:
        statement_ = sqlite.insert(account).on_conflict_do_nothing(index_elements=["user_id"])
        self._connection.execute(
            statement_,
            [rows.account_values(Account(user_id=user_id), ChainHead()) for user_id in user_ids],
        )

    # Writing

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


def _keyed(values: dict[str, Any], *key_columns: str) -> dict[str, Any]:
    """Row values for a keyed update: key columns become `key_*` parameters, not SET targets."""
    keyed = {f"key_{column}": values.pop(column) for column in key_columns}
    return values | keyed
