"""The ledger's storage on PostgreSQL, for production.

Round trips are what a write costs here, so a write transaction (a batch of requests) takes two
whatever its size (see `pipeline`): `lock` begins the transaction with one statement that locks
everything and looks up the request ids (`lock_statement`); then, after any loads a rule asks
for, `persist` sends one statement that writes every projection and request record, one that
appends the journal entries (`bulk_statement`), and COMMIT. Only accounts that do not exist yet
cost more: two statements, to create and lock them.

Writers take row locks in the port's fixed order. A deadlock or serialization failure that
happens all the same, a concurrent insert of the same request id, or a prepared statement gone
from the connection is reported as a conflict, and the service runs the transaction again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, Connection, Text, any_, literal
from sqlalchemy.exc import DBAPIError

from services.ledger.domain.journal import NewEntry
from services.ledger.service.ports import Locked, StateChanges, StoredRequest
from services.ledger.storage.bulk_statement import bulk_write, create_accounts
from services.ledger.storage.lock_statement import LOCK_STATEMENT, add_locked_row
from services.ledger.storage.pipeline import (
    UNKNOWN_PREPARED_STATEMENT,
    begin_with,
    execute_and_commit,
)
from services.ledger.storage.sql_storage import (
    SqlLedgerStorage,
    SqlReadTransaction,
    SqlWriteTransaction,
)

# A deadlock, a serialization failure: PostgreSQL rolled the transaction back for us. A
# prepared statement gone from the connection: `pipeline` prepares it again on the next try.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", UNKNOWN_PREPARED_STATEMENT})
_UNIQUE_VIOLATION = "23505"
# Two attempts of the same request raced past the look-up; the loser retries and finds the
# winner's answer.
_REQUEST_RACE_CONSTRAINTS = frozenset({"pk_request_record"})
_CONNECTION_SQLSTATE_PREFIXES = ("08", "57P")


def _one_of(column: Any, values: Sequence[str]) -> ColumnElement[bool]:
    """`column = ANY(array)`, whose text does not grow with the list, so the statement is
    parsed and prepared once, not once per length."""
    one_of: ColumnElement[bool] = column == any_(literal(list(values), type_=ARRAY(Text)))
    return one_of


class PostgresLedgerStorage(SqlLedgerStorage):
    """One write transaction at a time by default: a second mostly waits for the first's
    journal head lock, while splitting the waiting requests into smaller batches. More
    (`write_concurrency`) can pay off where round trips are slow and clients many."""

    def _write_transaction(self, connection: Connection) -> PostgresWriteTransaction:
        return PostgresWriteTransaction(connection)

    def _read_transaction(self, connection: Connection) -> SqlReadTransaction:
        return SqlReadTransaction(connection, _one_of)

    def _lost_a_race(self, error: DBAPIError) -> bool:
        original = error.orig
        sqlstate = getattr(original, "sqlstate", None)
        if sqlstate in _RETRYABLE_SQLSTATES:
            return True
        if sqlstate == _UNIQUE_VIOLATION:
            diagnostics = getattr(original, "diag", None)
            return bool(getattr(diagnostics, "constraint_name", None) in _REQUEST_RACE_CONSTRAINTS)
        return False

    def _lost_the_database(self, error: DBAPIError) -> bool:
        sqlstate: str | None = getattr(error.orig, "sqlstate", None)
        if sqlstate is None:
            # psycopg reports a refused or broken connection without a SQLSTATE.
            return "connection" in str(error.orig)
        return sqlstate.startswith(_CONNECTION_SQLSTATE_PREFIXES)


class PostgresWriteTransaction(SqlWriteTransaction):
    def __init__(self, connection: Connection) -> None:
        super().__init__(connection, _one_of)

    def lock(
        self,
        hold_ids: Sequence[str],
        obligation_ids: Sequence[str],
        user_ids: Sequence[str],
        request_ids: Sequence[str],
    ) -> Locked:
        """Begins the transaction, locks the holds, obligations and existing accounts and looks
        up the requests, in one round trip; only accounts still missing take two more."""
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
            # One statement, not one per account as an executemany would send.
            self._connection.execute(*create_accounts(missing))
            locked.states |= self._select_accounts_for_update(missing)
        return locked

    def persist(
        self,
        changes: StateChanges,
        requests: Sequence[StoredRequest],
        entries: Sequence[NewEntry],
    ) -> None:
        """Writes the projections and request records, appends the entries and commits, in
        one round trip; the context manager's commit then sends nothing."""
        execute_and_commit(self._connection, bulk_write(changes, requests, entries))
