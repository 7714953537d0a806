"""Schema migrations with Alembic, configured in code (no alembic.ini to ship or find).

A service keeps its migrations in a directory of its own (`env.py`, `versions/`) and a version
table of its own, so services sharing one database server never see each other's history.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from services.common.database import create_service_engine, is_sqlite

# Alembic keeps its running context in module globals, so one process migrates one at a time.
_MIGRATING = threading.Lock()


def alembic_config(migrations_directory: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_directory))
    # The option goes through configparser interpolation, where "%" is special (URL escapes).
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(migrations_directory: Path, database_url: str, revision: str = "head") -> None:
    """Brings the database's schema up to `revision`. Safe to run from several processes at
    once when the environment calls `serialize_migrations` first."""
    with _MIGRATING:
        command.upgrade(alembic_config(migrations_directory, database_url), revision)


def serialize_migrations(connection: Connection, lock_key: int) -> None:
    """Makes concurrent migrations of one database run one after the other. SQLite needs nothing
    more: its transaction already holds the database's write lock."""
    if not is_sqlite(connection.engine.url):
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})


def head_revision(migrations_directory: Path) -> str | None:
    """The newest revision the migrations directory holds."""
    return ScriptDirectory.from_config(alembic_config(migrations_directory, "")).get_current_head()


def database_revision(database_url: str, version_table: str) -> str | None:
    """The revision the database's schema is at; None when it was never migrated (or cannot be
    reached, which a caller waiting for the schema treats alike)."""
    engine = create_service_engine(database_url, pooled=False)
    try:
        with engine.connect() as connection:
            migration_context = MigrationContext.configure(
                connection, opts={"version_table": version_table}
            )
            return migration_context.get_current_revision()
    except OperationalError:
        return None
    finally:
        engine.dispose()


def wait_for_schema(
    migrations_directory: Path,
    database_url: str,
    version_table: str,
    *,
    timeout_s: float,
    poll_interval_s: float = 2.0,
) -> bool:
    """Waits until the database's schema is at the newest revision; False if it is not within
    `timeout_s`. A service's pods run this before the service starts, so that none serves on a
    schema its separate migration step has not brought up to date yet."""
    head = head_revision(migrations_directory)
    deadline = time.monotonic() + timeout_s
    polls_max = max(1, math.ceil(timeout_s / poll_interval_s) + 1)
    for _ in range(polls_max):
        if database_revision(database_url, version_table) == head:
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(min(poll_interval_s, max(0.0, deadline - time.monotonic())))
    return database_revision(database_url, version_table) == head
