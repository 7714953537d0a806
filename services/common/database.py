"""SQLAlchemy engines for a service's own database: SQLite (the embedded default) or PostgreSQL.

SQLite: WAL (readers never block the writer), synchronous FULL (a committed write survives a
power cut), a busy timeout, foreign keys on, and `BEGIN IMMEDIATE` for every transaction the
service begins, so a transaction takes the write lock at its start instead of failing half-way
when another writer got there first. pysqlite's own transaction handling is off (isolation_level
None), so that BEGIN is the only one; statements outside a transaction run on their own.

PostgreSQL (psycopg 3): READ COMMITTED; concurrent writers are ordered by the service's own
version checks and keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Every statement sees the rows committed when it starts, inside a transaction or not.
POSTGRESQL_ISOLATION_LEVEL = "READ COMMITTED"


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_service_engine(
    database_url: str,
    *,
    pool_size: int = 5,
    pool_timeout_s: float = 30.0,
    pooled: bool = True,
    postgresql_isolation_level: str = POSTGRESQL_ISOLATION_LEVEL,
) -> Engine:
    """`postgresql_isolation_level` is every PostgreSQL connection's level for as long as it
    lives: "AUTOCOMMIT" for a service that begins its transactions itself."""
    url = make_url(database_url)
    pool_options: dict[str, Any] = (
        {"pool_size": pool_size, "max_overflow": 0, "pool_timeout": pool_timeout_s}
        if pooled
        else {"poolclass": NullPool}
    )
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, pool_options)
    if backend == "postgresql":
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        return create_engine(url, isolation_level=postgresql_isolation_level, **pool_options)
    raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")


def _sqlite_engine(url: URL, pool_options: dict[str, Any]) -> Engine:
    if not url.database or url.database == ":memory:":
        # Every connection to an in-memory database would see a database of its own.
        raise ValueError("a service needs a SQLite database file, not an in-memory database")
    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        **pool_options,
    )

    @event.listens_for(engine, "connect")
    def _configure_connection(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
