"""How PostgreSQL connections are set up: write connections get plans that find rows through
indexes even when they were made while the tables were still empty (see `storage.engine`); read
connections keep the planner's own choice."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from services.ledger.storage.engine import TransactionMode, create_ledger_engine


@pytest.mark.parametrize(
    ("mode", "sequential_scans"),
    [(TransactionMode.WRITE, "off"), (TransactionMode.READ, "on")],
)
def test_only_write_connections_turn_sequential_scans_off(
    postgres_url: str, mode: TransactionMode, sequential_scans: str
) -> None:
    engine = create_ledger_engine(postgres_url, mode)
    try:
        with engine.connect() as connection:
            # Through the driver: a write connection runs no statement outside a transaction.
            driver_connection = connection.connection.driver_connection
            assert driver_connection is not None
            shown = driver_connection.execute("SHOW enable_seqscan").fetchone()
            assert shown == (sequential_scans,)
    finally:
        engine.dispose()


def test_a_write_connection_refuses_a_statement_outside_a_transaction(postgres_url: str) -> None:
    """Write connections are in autocommit mode, their transactions begun with their first
    statement; a statement sent any other way would commit on its own, so it is refused."""
    engine = create_ledger_engine(postgres_url, TransactionMode.WRITE)
    try:
        with engine.connect() as connection, pytest.raises(RuntimeError, match="begin_with"):
            connection.execute(text("SELECT 1"))
    finally:
        engine.dispose()
