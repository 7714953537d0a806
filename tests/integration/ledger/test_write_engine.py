"""How PostgreSQL connections are set up: write connections get plans that find rows through
indexes even when they were made while the tables were still empty (see `storage.engine`); read
connections keep the planner's own choice."""

from __future__ import annotations

import pytest

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
            assert (
                connection.exec_driver_sql("SHOW enable_seqscan").scalar_one() == sequential_scans
            )
    finally:
        engine.dispose()
