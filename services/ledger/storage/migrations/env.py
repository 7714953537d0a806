"""Alembic environment for the ledger's schema (run by `services.ledger.storage.migrate`)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from services.ledger.storage.engine import TransactionMode, create_ledger_engine, is_sqlite
from services.ledger.storage.migrate import VERSION_TABLE
from services.ledger.storage.tables import ledger_metadata

# Any constant works; it only has to be the same in every process migrating this database.
MIGRATION_LOCK_KEY = 0x5E5A3E_1ED6E5


def _serialize_migrations(connection: Connection) -> None:
    """Makes concurrent migrations run one after the other. SQLite needs nothing more: the
    write engine's BEGIN IMMEDIATE already holds the database's write lock."""
    if not is_sqlite(connection.engine.url):
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


def run_migrations_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=ledger_metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    database_url = context.config.get_main_option("sqlalchemy.url")
    assert database_url is not None
    engine = create_ledger_engine(database_url, TransactionMode.MIGRATE, pooled=False)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=ledger_metadata,
                version_table=VERSION_TABLE,
                # SQLite can roll DDL back too; one transaction means a failed migration
                # leaves the schema as it was.
                transactional_ddl=True,
            )
            with context.begin_transaction():
                _serialize_migrations(connection)
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
