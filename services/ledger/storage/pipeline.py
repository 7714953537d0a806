"""PostgreSQL: a write transaction in two round trips, whatever its size, each one write to the
server and one read back.

A write transaction has two steps, each sent as one pipeline of the extended query protocol:

- `begin_with`: BEGIN and the transaction's first statement, which locks what it needs;
- `execute_and_commit`: the transaction's last statements and COMMIT. The journal head, locked
  by the last of them, is then held for that statement's run and the commit's WAL flush only,
  not also for the time it takes the ledger to answer with COMMIT; every writer of every ledger
  process waits on that lock.

Statements in between go through SQLAlchemy as usual and run in the open transaction.

The pipelines are driven through libpq (psycopg's `pq` layer), not psycopg's cursors: in
pipeline mode a cursor sends each statement as soon as it is executed and polls the socket
around it, so one step would go out in several writes, each waking the server's backend for a
part of the work. Here each step's messages are written into libpq's buffer, Sync included, sent
in one write and read back together. A round trip costs more than its network time: the
ledger's thread must wake and take the interpreter back from the other request threads, and a
PostgreSQL backend wakes for it too.

The statements are prepared once per connection, under a name derived from their text, in the
same pipeline as their first run; PostgreSQL then settles on a generic plan (see `engine`).
psycopg's own automatic preparation is off on write connections, because after a rollback it
deallocates every prepared statement of the connection, these included. Parameters travel as
text, and every statement casts each of its parameters (`CAST(:ids AS text[])`), so the server
knows their types; a list of text becomes an array literal.

Write connections run in autocommit mode (see `engine`), so psycopg sends no BEGIN of its own;
`require_open_transaction` makes sure no statement runs outside a transaction. SQLAlchemy's
commit and rollback at the end of the transaction block still reach psycopg, which sends
ROLLBACK if a transaction is still open (a step failed) and nothing once COMMIT has run.

Errors are turned into SQLAlchemy's, as SQLAlchemy would have, and a broken connection is
invalidated so that the pool does not hand it out again.
"""

from __future__ import annotations

import hashlib
import select
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import psycopg
from psycopg import pq
from psycopg.errors import error_from_result
from psycopg.pq import ExecStatus, TransactionStatus
from sqlalchemy import Connection, TextClause
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError

_BEGIN_WRITE = b"BEGIN ISOLATION LEVEL READ COMMITTED"
_COMMIT = b"COMMIT"
# Placeholders as the protocol numbers them ($1, $2, ...), a name used twice becoming one.
_NUMBERED_PARAMETERS = postgresql.psycopg.dialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
# Where each pooled connection keeps what is prepared on it (the pool forgets it with the
# connection).
_PREPARED_STATEMENTS = "sesame_prepared_statements"
# A prepared statement that does not exist (invalid_sql_statement_name); `postgres` reports it
# as a conflict, and the transaction runs again and prepares it anew.
UNKNOWN_PREPARED_STATEMENT = "26000"


def begin_with(
    connection: Connection, statement: TextClause, parameters: Mapping[str, Any]
) -> list[tuple[str, ...]]:
    """Begins the transaction and runs its first statement in one round trip; its rows."""
    driver_connection = _driver_connection(connection)
    assert driver_connection.pgconn.transaction_status == TransactionStatus.IDLE, (
        "a write transaction begins once"
    )
    commands = [_Command(_BEGIN_WRITE, ()), _command(statement, parameters)]
    with _as_sqlalchemy_errors(connection, commands):
        results = _run_pipeline(connection, commands)
    return _text_rows(results[-1], driver_connection.info.encoding)


def execute_and_commit(
    connection: Connection, statements: Sequence[tuple[TextClause, Mapping[str, Any]]]
) -> None:
    """Runs the transaction's last statements, in order, and commits, in one round trip; the
    first that fails stops the rest and the commit (the transaction is then rolled back when
    its block ends)."""
    commands = [*(_command(statement, parameters) for statement, parameters in statements)]
    commands.append(_Command(_COMMIT, ()))
    with _as_sqlalchemy_errors(connection, commands):
        _run_pipeline(connection, commands)


def require_open_transaction(dbapi_connection: Any) -> None:
    """Raises if a statement is about to run on a write connection outside a transaction,
    where autocommit would make it a transaction of its own."""
    status = dbapi_connection.pgconn.transaction_status
    if status == TransactionStatus.IDLE:
        raise RuntimeError("a PostgreSQL write transaction begins with `begin_with`")


@dataclass(frozen=True, slots=True)
class _Statement:
    """A statement as the protocol takes it: its text, the name it is prepared under, and the
    order of its parameters."""

    name: bytes
    sql: bytes
    parameter_names: tuple[str, ...]


@dataclass(slots=True)
class _PreparedStatements:
    """The statements prepared on one connection. Should they disappear (DEALLOCATE ALL, sent
    by a connection pooler or another client library), the connection forgets them all and
    prepares them again, under names of a new generation: one that still exists cannot clash."""

    generation: int = 0
    names: set[bytes] = field(default_factory=set)

    def name_of(self, statement: _Statement) -> bytes:
        return b"%s_%d" % (statement.name, self.generation)

    def forget(self) -> None:
        self.generation += 1
        self.names.clear()


@dataclass(frozen=True, slots=True)
class _Command:
    """What one step sends: a statement prepared once per connection, or a plain command."""

    statement: _Statement | bytes
    parameters: tuple[Any, ...]

    @property
    def text(self) -> str:
        sql = self.statement if isinstance(self.statement, bytes) else self.statement.sql
        return sql.decode()


@cache
def _statement(statement: TextClause) -> _Statement:
    compiled = statement.compile(dialect=_NUMBERED_PARAMETERS)
    sql = str(compiled).encode()
    name = b"sesame_" + hashlib.sha256(sql).hexdigest()[:24].encode()
    return _Statement(name, sql, tuple(compiled.positiontup or ()))


def _command(statement: TextClause, parameters: Mapping[str, Any]) -> _Command:
    prepared = _statement(statement)
    return _Command(prepared, tuple(parameters[name] for name in prepared.parameter_names))


def _run_pipeline(connection: Connection, commands: Sequence[_Command]) -> list[pq.abc.PGresult]:
    """Sends the commands and a Sync in one write and reads every result back; returns each
    command's result, or raises the first error (the commands after it did not run)."""
    driver_connection = _driver_connection(connection)
    pgconn, encoding = driver_connection.pgconn, driver_connection.info.encoding
    prepared: _PreparedStatements = connection.connection.info.setdefault(
        _PREPARED_STATEMENTS, _PreparedStatements()
    )
    # Encoded before anything is sent: a value that cannot be sent leaves the connection idle.
    messages = [
        (command.statement, [_text_value(value, encoding) for value in command.parameters])
        for command in commands
    ]
    # What each result answers, in order: a preparation (the name prepared) or a command.
    answers: list[bytes | None] = []
    pgconn.enter_pipeline_mode()
    try:
        for statement, values in messages:
            if isinstance(statement, bytes):
                pgconn.send_query_params(statement, values or None)
            else:
                name = prepared.name_of(statement)
                if name not in prepared.names and name not in answers:
                    pgconn.send_prepare(name, statement.sql)
                    answers.append(name)
                pgconn.send_query_prepared(name, values)
            answers.append(None)
        pgconn.pipeline_sync()
        while pgconn.flush():
            _wait(pgconn.socket, select.POLLOUT)
        results = _results_until_sync(pgconn)
    finally:
        if pgconn.pipeline_status != pq.PipelineStatus.OFF:
            pgconn.exit_pipeline_mode()
    assert len(results) == len(answers), "one result per message sent"
    errors = [result for result in results if result.status == ExecStatus.FATAL_ERROR]
    prepared.names.update(
        name
        for name, result in zip(answers, results, strict=True)
        if name is not None and result.status == ExecStatus.COMMAND_OK
    )
    if errors:
        error = error_from_result(errors[0], encoding)
        if error.sqlstate == UNKNOWN_PREPARED_STATEMENT:
            prepared.forget()
        raise error
    return [result for name, result in zip(answers, results, strict=True) if name is None]


def _results_until_sync(pgconn: pq.abc.PGconn) -> list[pq.abc.PGresult]:
    results: list[pq.abc.PGresult] = []
    while True:
        while pgconn.is_busy():
            _wait(pgconn.socket, select.POLLIN)
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            continue  # the end of one command's results
        if result.status == ExecStatus.PIPELINE_SYNC:
            return results
        results.append(result)


def _wait(fileno: int, events: int) -> None:
    poller = select.poll()
    poller.register(fileno, events)
    poller.poll()


def _text_value(value: Any, encoding: str) -> bytes | None:
    """A parameter in PostgreSQL's text format."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode(encoding)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value).encode()
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return _text_array(value).encode(encoding)
    raise TypeError(f"no text form for a parameter of type {type(value).__name__}")


def _text_array(values: Sequence[str]) -> str:
    """An array literal of text: every element quoted, backslashes and quotes escaped."""
    quoted = (value.replace("\\", "\\\\").replace('"', '\\"') for value in values)
    return "{" + ",".join(f'"{value}"' for value in quoted) + "}"


def _text_rows(result: pq.abc.PGresult, encoding: str) -> list[tuple[str, ...]]:
    """The rows of a result whose every value is text, never NULL."""
    return [
        tuple(_text(result.get_value(row, column), encoding) for column in range(result.nfields))
        for row in range(result.ntuples)
    ]


def _text(value: bytes | None, encoding: str) -> str:
    assert value is not None, "no NULL in these results"
    return value.decode(encoding)


def _driver_connection(connection: Connection) -> psycopg.Connection[Any]:
    driver_connection = connection.connection.driver_connection
    assert isinstance(driver_connection, psycopg.Connection), "PostgreSQL through psycopg 3"
    return driver_connection


@contextmanager
def _as_sqlalchemy_errors(connection: Connection, commands: Sequence[_Command]) -> Iterator[None]:
    """psycopg's errors as SQLAlchemy would raise them, naming the statements sent (which of
    them failed, the error's message says)."""
    try:
        yield
    except psycopg.Error as error:
        driver_connection = _driver_connection(connection)
        # A connection left in pipeline mode (its reading was cut short) is not used again.
        in_pipeline = driver_connection.pgconn.pipeline_status != pq.PipelineStatus.OFF
        broken = driver_connection.broken or driver_connection.closed or in_pipeline
        if broken:
            connection.invalidate(error)
        raise DBAPIError.instance(
            "; ".join(command.text for command in commands),
            [],
            error,
            psycopg.Error,
            hide_parameters=True,
            connection_invalidated=broken,
            dialect=connection.dialect,
        ) from error
