"""PostgreSQL: statements sent together with what psycopg would otherwise send on its own.

A round trip costs more than its network time: the ledger's thread must wake, take the
interpreter back from the other request threads, read the answer and send the next command.
Two such round trips are avoidable with psycopg's pipeline mode:

- BEGIN, which psycopg sends on its own before a transaction's first statement, goes out with
  that statement (`fetch_in_new_transaction`);
- COMMIT goes out with the transaction's last statements (`execute_and_commit`). The journal
  head, locked by the last of them, is then held for that statement's run and the commit's WAL
  flush only, not also for the time it takes the ledger to answer with COMMIT; every writer of
  every ledger process waits on that lock.

The statements go to psycopg directly, below SQLAlchemy's execution, so its errors are turned
into SQLAlchemy's here, as SQLAlchemy would have, and a broken connection is invalidated so that
the pool does not hand it out again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

import psycopg
from sqlalchemy import Connection, TextClause
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError


def fetch_in_new_transaction(
    connection: Connection, statement: TextClause, parameters: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """Runs the transaction's first statement, BEGIN included, in one round trip; its rows."""
    driver_connection = _driver_connection(connection)
    sql = _driver_sql(statement, connection.dialect)
    with (
        _as_sqlalchemy_errors(connection, [(sql, parameters)]),
        driver_connection.pipeline(),
        driver_connection.cursor() as cursor,
    ):
        cursor.execute(sql, parameters)
        return cursor.fetchall()


def execute_and_commit(
    connection: Connection, statements: Sequence[tuple[TextClause, Mapping[str, Any]]]
) -> None:
    """Runs the transaction's last statements, in order, and commits, in one round trip; the
    first that fails stops the rest and the commit. SQLAlchemy's own commit at the end of the
    transaction block then finds nothing left to commit."""
    driver_connection = _driver_connection(connection)
    compiled = [
        (_driver_sql(statement, connection.dialect), dict(parameters))
        for statement, parameters in statements
    ]
    with (
        _as_sqlalchemy_errors(connection, compiled),
        driver_connection.pipeline(),
        driver_connection.cursor() as cursor,
    ):
        for sql, parameters in compiled:
            cursor.execute(sql, parameters)
        driver_connection.commit()


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
