"""A write transaction that fails half-way leaves nothing behind, and its connection goes back
to the pool ready for the next one. On PostgreSQL the ledger begins and commits its write
transactions itself (see `storage.pipeline`), so this is the ledger's promise, not the driver's."""

from __future__ import annotations

import pytest

from services.ledger.service.ports import StateChanges
from services.ledger.storage.sql_storage import SqlLedgerStorage


class _StepFailed(Exception):
    pass


def test_a_write_that_fails_after_its_locks_writes_nothing(ledger_database_url: str) -> None:
    # One connection: the next write must get the very connection the failed one used.
    storage = SqlLedgerStorage(ledger_database_url, pool_size=1)
    try:
        with pytest.raises(_StepFailed), storage.write() as transaction:
            # Locking a user without an account creates the account inside the transaction.
            locked = transaction.lock([], [], ["u-rolled-back"], [])
            assert "u-rolled-back" in locked.states
            raise _StepFailed

        with storage.read() as reader:
            assert reader.get_account("u-rolled-back") is None

        with storage.write() as transaction:
            transaction.lock([], [], ["u-next"], [])
            transaction.persist(StateChanges(), [], [])
        with storage.read() as reader:
            assert reader.get_account("u-next") is not None
    finally:
        storage.close()
