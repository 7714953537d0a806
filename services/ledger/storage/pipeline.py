"""PostgreSQL: a write transaction in two round trips, whatever its size.

psycopg's pipeline mode sends several statements and reads their results in one round trip, but
it starts a transaction on its own with BEGIN and waits for that answer before anything else,
and its `commit()` waits for COMMIT's answer before the pipeline's end is synchronised: five
round trips for a transaction of two steps. Each costs more than its network time: the ledger's
thread must wake, take the interpreter back from the other request threads, read the answer and
send the next command, and a PostgreSQL backend wakes for it too.

So write connections run in autocommit mode (see `engine`) and the transaction is spelled out:

- `begin_with`: BEGIN and the transaction's first statement, which locks what it needs, go out
  together (one round trip);
- `execute_and_commit`: the transaction's last statements and COMMIT go out together (one round
  trip). The journal head, locked by the last of them, is then held for that statement's run and
  the commit's WAL flush only, not also for the time it takes the ledger to answer with COMMIT;
  every writer of every ledger process waits on that lock.

Statements in between go through SQLAlchemy as usual and run in the open transaction (autocommit
only means that psycopg sends no BEGIN of its own). `require_open_transaction` makes sure no
statement runs outside one. SQLAlchemy's commit and rollback at the end of the transaction block
still reach psycopg, which sends ROLLBACK if a transaction is still open (a step failed) and
nothing once COMMIT has run.

The statements go to psycopg directly, below SQLAlchemy's execution, so their errors are turned
into SQLAlchemy's here, as SQLAlchemy would have, and a broken connection is invalidated so that
the pool does not hand it out again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, TextClause
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

_BEGIN_WRITE = "BEGIN ISOLATION LEVEL READ COMMITTED"
_COMMIT = "COMMIT"


def begin_with(
    connection: Connection, statement: TextClause, parameters: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """Begins the transaction and runs its first statement in one round trip; its rows."""
    driver_connection = _driver_connection(connection)
    assert driver_connection.pgconn.transaction_status == TransactionStatus.IDLE, (
        "a write transaction begins once"
    )
    sql = _driver_sql(statement, connection.dialect)
    with (
        _as_sqlalchemy_errors(connection, [(_BEGIN_WRITE, {}), (sql, parameters)]),
        driver_connection.cursor() as cursor,
    ):
        with driver_connection.pipeline():
            cursor.execute(_BEGIN_WRITE)
            cursor.execute(sql, parameters)
        return cursor.fetchall()


def execute_and_commit(
    connection: Connection, statements: Sequence[tuple[TextClause, Mapping[str, Any]]]
) -> None:
    """Runs the transaction's last statements, in order, and commits, in one round trip; the
    first that fails stops the rest and the commit (the transaction is then rolled back when
    its block ends)."""
    driver_connection = _driver_connection(connection)
    compiled = [
        (_driver_sql(statement, connection.dialect), dict(parameters))
        for statement, parameters in statements
    ]
    with (
        _as_sqlalchemy_errors(connection, [*compiled, (_COMMIT, {})]),
        driver_connection.cursor() as cursor,
        driver_connection.pipeline(),
    ):
        for sql, parameters in compiled:
            cursor.execute(sql, parameters)
        cursor.execute(_COMMIT)


def require_open_transaction(dbapi_connection: Any) -> None:
    """Raises if a statement is about to run on a write connection outside a transaction,
    where autocommit would make it a transaction of its own."""
    status = dbapi_connection.pgconn.transaction_status
    if status == TransactionStatus.IDLE:
        raise RuntimeError("a PostgreSQL write transaction begins with `begin_with`")


def _driver_connection(connection: Connection) -> psycopg.Connection[Any]:
    driver_connection = connection.connection.driver_connection
    assert isinstance(driver_connection, psycopg.Connection), "PostgreSQL through psycopg 3"
    return driver_connection


@cache
def _driver_sql(statement: TextClause, dialect: Dialect) -> str:
    """The statement's text in psycopg's parameter style, compiled once."""
    return str(statement.compile(dialect=dialect))


@contextmanager
def _as_sqlalchemy_errors(
    connection: Connection, statements: Sequence[tuple[str, Mapping[str, Any]]]
) -> Iterator[None]:
    """psycopg's errors as SQLAlchemy would raise them, naming the statements sent (which of
    them failed, psycopg does not say)."""
    try:
        yield
    except psycopg.Error as error:
        driver_connection = _driver_connection(connection)
        broken = driver_connection.broken or driver_connection.closed
        if broken:
            connection.invalidate(error)
        raise DBAPIError.instance(
            "; ".join(sql for sql, _ in statements),
            [dict(parameters) for _, parameters in statements],
            error,
            psycopg.Error,
            hide_parameters=True,
            connection_invalidated=broken,
            dialect=connection.dialect,
        ) from error
