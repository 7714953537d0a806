"""The waiver's schema migrations (see `services.common.migrations`)."""

from __future__ import annotations

from pathlib import Path

from services.common import migrations

MIGRATIONS_DIRECTORY = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "waiver_schema_version"
# Any constant works; it only has to be the same in every process migrating this database.
MIGRATION_LOCK_KEY = 0x5E5A3E_3A17E2


def upgrade(database_url: str, revision: str = "head") -> None:
    migrations.upgrade(MIGRATIONS_DIRECTORY, database_url, revision)
