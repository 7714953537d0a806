"""Engines for SQLite and PostgreSQL, configured the way the ledger's transactions need.

SQLite: WAL (readers never block the writer), a busy timeout, foreign keys on, and
`BEGIN IMMEDIATE` for writes so a write transaction takes the database's write lock at its
start instead of failing half-way when another writer got there first. pysqlite's own
transaction handling is switched off (isolation_level None) so that our BEGIN is the only one.

PostgreSQL (psycopg 3): READ COMMITTED for writes, which take row locks explicitly, begun by the
ledger itself with the transaction's first statement (see `pipeline`); REPEATABLE READ, read
only, for reads, so a read that runs several queries sees one snapshot.

Write connections also turn sequential scans off. Every write statement finds its rows by key,
and the ones every write runs are prepared once per connection (see `pipeline`): PostgreSQL then
settles on a generic plan, costed with the table sizes of that moment. Made while the tables are
small, that plan scans them, and it keeps scanning them in every transaction as they grow (the
lock statement's look-up of request records, for one). With scans off, the plans use the keys'
indexes whatever the tables held when they were made.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from services.ledger.storage.pipeline import require_open_transaction

SQLITE_BUSY_TIMEOUT_MS = 10_000


class TransactionMode(Enum):
    WRITE = "write"
    READ = "read"
    # Schema changes, run by Alembic in a transaction the driver begins.
    MIGRATE = "migrate"


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_ledger_engine(
    database_url: str,
    mode: TransactionMode,
    *,
    pool_size: int = 5,
    pool_timeout_s: float = 30.0,
    pooled: bool = True,
) -> Engine:
    url = make_url(database_url)
    pool_options: dict[str, Any] = (
        {"pool_size": pool_size, "max_overflow": 0, "pool_timeout": pool_timeout_s}
        if pooled
        else {"poolclass": NullPool}
    )
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, mode, pool_options)
    if url.get_backend_name() == "postgresql":
        return _postgresql_engine(url, mode, pool_options)
    raise ValueError(f"unsupported database {url.get_backend_name()!r}: use sqlite or postgresql")


def _sqlite_engine(url: URL, mode: TransactionMode, pool_options: dict[str, Any]) -> Engine:
    if not url.database or url.database == ":memory:":
        # Every connection to an in-memory database would see a database of its own.
        raise ValueError("the ledger needs a SQLite database file, not an in-memory database")
    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        **pool_options,
    )
    begin_statement = "BEGIN" if mode is TransactionMode.READ else "BEGIN IMMEDIATE"

    @event.listens_for(engine, "connect")
    def _configure_connection(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed entry survives a power cut too, not only a crash of the process.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql(begin_statement)

    return engine


def _postgresql_engine(url: URL, mode: TransactionMode, pool_options: dict[str, Any]) -> Engine:
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if mode is TransactionMode.WRITE:
        # Autocommit: a write transaction begins with its first statement, in the same round
        # trip, READ COMMITTED (see `pipeline`); nothing may run outside one. psycopg prepares
        # nothing itself: after a rollback it would deallocate the statements `pipeline`
        # prepared.
        write_engine = create_engine(
            url,
            isolation_level="AUTOCOMMIT",
            connect_args={"prepare_threshold": None},
            **pool_options,
        )

        @event.listens_for(write_engine, "before_cursor_execute")
        def _inside_a_transaction(
            connection: Any, _cursor: Any, _statement: Any, *_arguments: Any
        ) -> None:
            require_open_transaction(connection.connection.driver_connection)

        @event.listens_for(write_engine, "connect")
        def _index_scans_only(dbapi_connection: Any, _record: Any) -> None:
            # Set here rather than in the connection's options, which the URL may carry.
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET enable_seqscan = off")
            dbapi_connection.commit()

        return write_engine
    if mode is TransactionMode.MIGRATE:
        return create_engine(url, isolation_level="READ COMMITTED", **pool_options)
    engine = create_engine(url, isolation_level="REPEATABLE READ", **pool_options)

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.read_only = True

    return engine
