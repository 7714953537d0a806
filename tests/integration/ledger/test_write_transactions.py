"""Write transactions at the storage's edge. On PostgreSQL the ledger begins, sends and commits
its write transactions itself (see `storage.pipeline`), so what a driver would otherwise promise
is the ledger's to keep: a transaction that fails half-way leaves nothing behind, its error is
reported like any other, and its connection goes back to the pool ready for the next one.

Every test uses a pool of one connection, so the next write gets the very connection the
previous one used, and a stand-in for a connection pooler in front of the database, which does
nothing to that connection unless a test asks it to."""

from __future__ import annotations

from typing import Any

import pytest

from services.common.money import Money
from services.ledger.domain import commands
from services.ledger.service.ledger_service import LedgerService
from services.ledger.service.ports import (
    RequestOutcome,
    StateChanges,
    StorageConflict,
    StoredRequest,
)
from services.ledger.storage.sql_storage import SqlLedgerStorage, open_ledger_storage
from tests.support.clock import FakeClock

HOUR_US = 3_600_000_000


class _StepFailed(Exception):
    pass


class _PoolerThatDeallocates:
    """Plays a connection pooler (or another library on the connection) that deallocates every
    prepared statement of the ledger's write connection when asked, as the ledger next takes
    that connection for a write."""

    def __init__(self) -> None:
        self.asked = False
        self.deallocations = 0

    def on_write_connection(self, driver_connection: Any) -> None:
        if self.asked:
            self.asked = False
            driver_connection.execute("DEALLOCATE ALL")
            self.deallocations += 1


@pytest.fixture
def pooler() -> _PoolerThatDeallocates:
    return _PoolerThatDeallocates()


@pytest.fixture
def storage(ledger_database_url: str, pooler: _PoolerThatDeallocates):
    opened = open_ledger_storage(
        ledger_database_url, pool_size=1, on_write_connection=pooler.on_write_connection
    )
    yield opened
    opened.close()


def _request(request_id: str) -> StoredRequest:
    return StoredRequest(
        request_id=request_id,
        request_hash="hash",
        method="PlaceHold",
        outcome=RequestOutcome.SUCCEEDED,
        response_json="{}",
        error_reason="",
        error_message="",
        recorded_at_us=1,
    )


def test_a_write_that_fails_after_its_locks_writes_nothing(storage: SqlLedgerStorage) -> None:
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


def test_a_write_refused_by_the_database_at_commit_writes_nothing(
    storage: SqlLedgerStorage,
) -> None:
    """Two attempts of one request that raced past the look-up: the second's records collide
    with the first's, which the ledger reports as a conflict to retry (it then finds the
    first's answer), not as a failure."""
    with storage.write() as transaction:
        transaction.lock([], [], ["u-first"], ["r-1"])
        transaction.persist(StateChanges(), [_request("r-1")], [])

    with pytest.raises(StorageConflict), storage.write() as transaction:
        transaction.lock([], [], ["u-second"], [])
        transaction.persist(StateChanges(), [_request("r-2"), _request("r-1")], [])

    with storage.write() as transaction:
        stored = transaction.lock([], [], ["u-third"], ["r-1", "r-2"])
        transaction.persist(StateChanges(), [], [])
    assert set(stored.requests) == {"r-1"}
    with storage.read() as reader:
        assert reader.get_account("u-second") is None
        assert reader.get_account("u-third") is not None


# SQLite prepares nothing across transactions: this is about PostgreSQL only.
@pytest.mark.parametrize("ledger_database_url", ["postgresql"], indirect=True)
def test_writes_go_on_when_the_prepared_statements_disappear(
    storage: SqlLedgerStorage, pooler: _PoolerThatDeallocates
) -> None:
    """A connection pooler or another library on the connection may deallocate what the ledger
    prepared; the write that finds its statement gone runs again and prepares it anew."""
    service = LedgerService(storage, FakeClock())
    capacity = Money("CNY", 10_000)
    service.set_waiver_capacity(commands.SetWaiverCapacity("r-capacity", "u-1", capacity))
    first = service.place_hold(commands.PlaceHold("r-first", "u-1", Money("CNY", 100), HOUR_US))

    pooler.asked = True
    second = service.place_hold(commands.PlaceHold("r-second", "u-1", Money("CNY", 200), HOUR_US))
    assert pooler.deallocations == 1
    service.release_hold(commands.ReleaseHold("r-release", first.hold_id))
    summary = service.get_account_summary("u-1")
    assert (summary.held_minor, summary.open_hold_count) == (200, 1)
    assert second.hold_id != first.hold_id
    assert service.verify_chain("u-1").intact
