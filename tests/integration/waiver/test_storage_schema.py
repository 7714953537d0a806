"""The waiver's schema: the migration builds exactly the tables, and runs safely again."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from services.waiver.storage.migrate import VERSION_TABLE, upgrade
from services.waiver.storage.tables import waiver_metadata


def test_the_migration_creates_exactly_the_tables(waiver_database_url):
    engine = create_engine(waiver_database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        differences = compare_metadata(context, waiver_metadata)
    engine.dispose()

    assert differences == []


def test_migrating_an_up_to_date_schema_changes_nothing(waiver_database_url):
    upgrade(waiver_database_url)

    engine = create_engine(waiver_database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM waiver_order")).scalar_one() == 0
    engine.dispose()
