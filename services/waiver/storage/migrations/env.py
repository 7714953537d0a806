"""Alembic environment for the waiver's schema (run by `services.waiver.storage.migrate`)."""

from __future__ import annotations

from alembic import context

from services.common.database import create_service_engine
from services.common.migrations import serialize_migrations
from services.waiver.storage.migrate import MIGRATION_LOCK_KEY, VERSION_TABLE
from services.waiver.storage.tables import waiver_metadata


def run_migrations_online() -> None:
    database_url = context.config.get_main_option("sqlalchemy.url")
    assert database_url is not None
    engine = create_service_engine(database_url, pooled=False)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=waiver_metadata,
                version_table=VERSION_TABLE,
                transactional_ddl=True,
            )
            with context.begin_transaction():
                serialize_migrations(connection, MIGRATION_LOCK_KEY)
                context.run_migrations()
    finally:
        engine.dispose()


run_migrations_online()
