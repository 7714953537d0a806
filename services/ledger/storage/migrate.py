"""Schema migrations (Alembic), configured in code: no alembic.ini to ship or find."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIRECTORY = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "ledger_schema_version"
# Alembic keeps its running context in module globals, so one process migrates one at a time.
_MIGRATING = threading.Lock()


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    # The option goes through configparser interpolation, where "%" is special (URL escapes).
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Brings the database's schema up to `revision`. Safe to run from several processes (and
    threads) at once: the migration takes a database-wide lock first, and finding the schema
    already at `revision` does nothing."""
    with _MIGRATING:
        command.upgrade(alembic_config(database_url), revision)
