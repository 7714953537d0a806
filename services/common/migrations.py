"""Schema migrations with Alembic, configured in code (no alembic.ini to ship or find).

A service keeps its migrations in a directory of its own (`env.py`, `versions/`) and a version
table of its own, so services sharing one database server never see each other's history.
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from services.common.database import is_sqlite

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
