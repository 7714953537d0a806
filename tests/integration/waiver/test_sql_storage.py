"""The waiver's SQL storage on SQLite and PostgreSQL: what a transaction writes lands whole or
not at all, whatever it read first; a key already taken or a version moved on is a conflict that
writes nothing; and a pooled connection comes back as it left, whatever the last use did."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from services.waiver.domain.decision import Decision, Limit, WaiverOutcome
from services.waiver.domain.lifecycle import Change, ReleaseHold
from services.waiver.domain.order import Order, OrderRequest, OrderState, RiskFundType
from services.waiver.domain.policy import OrderTerms
from services.waiver.service.ports import (
    CapacityRecord,
    OrderConflict,
    PendingChange,
    RequestOutcome,
    RequestRecord,
    StoredOrder,
)
from services.waiver.storage.migrate import upgrade
from services.waiver.storage.sql_storage import SqlWaiverStorage

HOUR_US = 3_600_000_000
NOW_US = 1_767_225_600_000_000


class Interrupted(Exception):
    """Raised inside a transaction to abandon it."""


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_database_factory: Callable[[], str]
) -> Iterator[SqlWaiverStorage]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'waiver.db'}"
    else:
        url = postgres_database_factory()
    upgrade(url)
    # One connection, so every transaction reuses the one the last left behind.
    storage = SqlWaiverStorage(url, pool_size=1)
    yield storage
    storage.close()


def _order(out_order_no: str) -> Order:
    request = OrderRequest(
        merchant_id="m-1",
        out_order_no=out_order_no,
        user_id="u-1",
        scenario_id="bike",
        risk_fund_type=RiskFundType.DEPOSIT,
        risk_minor=9_900,
        start_us=NOW_US,
        end_us=NOW_US + HOUR_US,
    )
    return Order(
        request=request,
        decision=Decision(WaiverOutcome.FULL, 9_900, 0, Limit.RISK_AMOUNT, ()),
        terms=OrderTerms(
            grace_period_us=HOUR_US,
            breach_period_us=2 * HOUR_US,
            payment_window_us=HOUR_US,
        ),
        state=OrderState.DOING,
        create_time_us=NOW_US,
        update_time_us=NOW_US,
    )


def _stored(out_order_no: str, version: int = 1) -> StoredOrder:
    return StoredOrder("m-1", out_order_no, "fingerprint", _order(out_order_no), None, version, 1)


def _request(
    request_id: str, out_order_no: str = "o-1", method: str = "CreateOrder"
) -> RequestRecord:
    return RequestRecord("m-1", request_id, method, "hash", out_order_no, RequestOutcome.APPLIED)


def _recorded(storage: SqlWaiverStorage, request_id: str) -> RequestRecord | None:
    with storage.transaction() as transaction:
        return transaction.find_request("m-1", request_id)


def _pending(stored: StoredOrder, request_id: str) -> StoredOrder:
    """`stored` with a completion in flight, as an order step records it."""
    assert stored.order is not None
    done = replace(stored.order, state=OrderState.DONE, total_minor=0)
    pending = PendingChange(
        Change(done, (ReleaseHold(fulfilled=True),)),
        request_id,
        NOW_US,
        creating=False,
    )
    return replace(stored, pending=pending, version=stored.version + 1)


def test_a_transaction_that_read_first_writes_everything_or_nothing(
    storage: SqlWaiverStorage,
) -> None:
    with pytest.raises(Interrupted), storage.transaction() as transaction:
        assert transaction.get_order("m-1", "o-1") is None
        assert transaction.find_request("m-1", "r-1") is None
        transaction.insert_order(_stored("o-1"))
        transaction.save_request(_request("r-1"))
        raise Interrupted
    assert storage.get_order("m-1", "o-1") is None
    with storage.transaction() as transaction:
        assert transaction.find_request("m-1", "r-1") is None
        transaction.insert_order(_stored("o-1"))
        transaction.save_request(_request("r-1"))
    assert storage.get_order("m-1", "o-1") == _stored("o-1")
    with storage.transaction() as transaction:
        assert transaction.find_request("m-1", "r-1") == _request("r-1")


def test_a_transaction_sees_its_own_writes_before_it_commits(storage: SqlWaiverStorage) -> None:
    with storage.transaction() as transaction:
        transaction.insert_order(_stored("o-1"))
        transaction.save_request(_request("r-1"))
        assert transaction.get_order("m-1", "o-1") == _stored("o-1")
        assert transaction.find_request("m-1", "r-1") == _request("r-1")


def test_an_order_key_taken_already_is_a_conflict_that_changes_nothing(
    storage: SqlWaiverStorage,
) -> None:
    with storage.transaction() as transaction:
        transaction.insert_order(_stored("o-1"))
    other = replace(_stored("o-1"), fingerprint="another")
    with pytest.raises(OrderConflict), storage.transaction() as transaction:
        transaction.insert_order(other)
    assert storage.get_order("m-1", "o-1") == _stored("o-1")


def test_an_update_of_a_version_that_moved_on_is_a_conflict_that_changes_nothing(
    storage: SqlWaiverStorage,
) -> None:
    with storage.transaction() as transaction:
        transaction.insert_order(_stored("o-1"))
        transaction.insert_order(_stored("o-2"))
    with storage.transaction() as transaction:
        transaction.update_order(_stored("o-1", version=2), expected_version=1)
    with pytest.raises(OrderConflict), storage.transaction() as transaction:
        transaction.update_order(_stored("o-2", version=2), expected_version=1)
        transaction.update_order(_stored("o-1", version=2), expected_version=1)
    assert storage.get_order("m-1", "o-1") == _stored("o-1", version=2)
    assert storage.get_order("m-1", "o-2") == _stored("o-2", version=1)


def test_an_update_on_its_own_lands_once_and_then_conflicts(storage: SqlWaiverStorage) -> None:
    with storage.transaction() as transaction:
        transaction.insert_order(_stored("o-1"))
    storage.update_order(_stored("o-1", version=2), expected_version=1)
    assert storage.get_order("m-1", "o-1") == _stored("o-1", version=2)
    with pytest.raises(OrderConflict):
        storage.update_order(replace(_stored("o-1", version=2), fingerprint="x"), 1)
    assert storage.get_order("m-1", "o-1") == _stored("o-1", version=2)


def test_a_request_saved_twice_is_recorded_once(storage: SqlWaiverStorage) -> None:
    for _ in range(2):
        with storage.transaction() as transaction:
            transaction.save_request(_request("r-1"))
    with storage.transaction() as transaction:
        assert transaction.find_request("m-1", "r-1") == _request("r-1")


def test_a_request_id_recorded_meanwhile_for_another_request_is_a_conflict(
    storage: SqlWaiverStorage,
) -> None:
    with storage.transaction() as transaction:
        transaction.save_request(_request("r-1", out_order_no="o-1"))
    with pytest.raises(OrderConflict), storage.transaction() as transaction:
        transaction.insert_order(_stored("o-2"))
        transaction.save_request(_request("r-1", out_order_no="o-2"))
    assert storage.get_order("m-1", "o-2") is None
    with storage.transaction() as transaction:
        assert transaction.find_request("m-1", "r-1") == _request("r-1", out_order_no="o-1")


def test_a_capacity_recorded_meanwhile_is_a_conflict(storage: SqlWaiverStorage) -> None:
    first = CapacityRecord("u-1", "thin", "1.0.0", 20_000, change_number=1, applied=False)
    with storage.transaction() as transaction:
        transaction.save_capacity(first, None)
    with pytest.raises(OrderConflict), storage.transaction() as transaction:
        transaction.save_capacity(replace(first, band="350-449"), None)
    applied = replace(first, applied=True)
    with storage.transaction() as transaction:
        transaction.save_capacity(applied, first)
    with pytest.raises(OrderConflict), storage.transaction() as transaction:
        transaction.save_capacity(replace(first, change_number=2), first)
    with storage.transaction() as transaction:
        assert transaction.get_capacity("u-1") == applied


def test_a_connection_used_for_reads_alone_comes_back_ready_for_a_transaction(
    storage: SqlWaiverStorage,
) -> None:
    """The pool has one connection: the reads before (in and out of a transaction) must not
    leave it committing each statement on its own."""
    assert storage.get_order("m-1", "o-1") is None
    with storage.transaction() as transaction:
        assert transaction.find_request("m-1", "r-1") is None
    with pytest.raises(Interrupted), storage.transaction() as transaction:
        transaction.insert_order(_stored("o-1"))
        transaction.save_request(_request("r-1"))
        raise Interrupted
    assert storage.get_order("m-1", "o-1") is None
    with storage.transaction() as transaction:
        assert transaction.find_request("m-1", "r-1") is None


def test_an_order_and_the_request_creating_it_are_written_together(
    storage: SqlWaiverStorage,
) -> None:
    storage.insert_order(_stored("o-1"), _request("r-1"))
    assert storage.get_order("m-1", "o-1") == _stored("o-1")
    assert _recorded(storage, "r-1") == _request("r-1")


def test_an_order_key_taken_already_records_no_request(storage: SqlWaiverStorage) -> None:
    storage.insert_order(_stored("o-1"), _request("r-1"))
    with pytest.raises(OrderConflict):
        storage.insert_order(replace(_stored("o-1"), fingerprint="another"), _request("r-2"))
    assert storage.get_order("m-1", "o-1") == _stored("o-1")
    assert _recorded(storage, "r-2") is None


def test_an_order_that_moved_on_records_no_request(storage: SqlWaiverStorage) -> None:
    storage.insert_order(_stored("o-1"), _request("r-1"))
    storage.update_order(_stored("o-1", version=2), 1, _request("r-2", method="CompleteOrder"))
    with pytest.raises(OrderConflict):
        storage.update_order(_stored("o-1", version=2), 1, _request("r-3", method="CancelOrder"))
    with pytest.raises(OrderConflict):
        storage.save_pending(_pending(_stored("o-1"), "r-4"), 1, _request("r-4"))
    assert storage.get_order("m-1", "o-1") == _stored("o-1", version=2)
    assert _recorded(storage, "r-2") == _request("r-2", method="CompleteOrder")
    assert _recorded(storage, "r-3") is None
    assert _recorded(storage, "r-4") is None


def test_a_request_id_recorded_for_another_request_writes_no_order(
    storage: SqlWaiverStorage,
) -> None:
    storage.insert_order(_stored("o-1"), _request("r-1"))
    with pytest.raises(OrderConflict):
        storage.insert_order(_stored("o-2"), _request("r-1", out_order_no="o-2"))
    with pytest.raises(OrderConflict):
        storage.update_order(_stored("o-1", version=2), 1, _request("r-1", method="CancelOrder"))
    with pytest.raises(OrderConflict):
        storage.save_pending(_pending(_stored("o-1"), "r-1"), 1, _request("r-1", method="X"))
    assert storage.get_order("m-1", "o-2") is None
    assert storage.get_order("m-1", "o-1") == _stored("o-1")
    assert _recorded(storage, "r-1") == _request("r-1")


def test_a_request_recorded_already_for_the_same_request_lets_the_write_go_ahead(
    storage: SqlWaiverStorage,
) -> None:
    """A creation undone and then retried writes its order again under the same request."""
    storage.insert_order(_stored("o-1"), _request("r-1"))
    forgotten = replace(_stored("o-1", version=2), order=None)
    storage.update_order(forgotten, 1)
    storage.update_order(_stored("o-1", version=3), 2, _request("r-1"))
    assert storage.get_order("m-1", "o-1") == _stored("o-1", version=3)
    assert _recorded(storage, "r-1") == _request("r-1")


def test_a_change_in_flight_is_written_beside_the_settled_order(
    storage: SqlWaiverStorage,
) -> None:
    storage.insert_order(_stored("o-1"), _request("r-1"))
    in_flight = _pending(_stored("o-1"), "r-2")
    storage.save_pending(in_flight, 1, _request("r-2", method="CompleteOrder"))
    assert storage.get_order("m-1", "o-1") == in_flight
    assert _recorded(storage, "r-2") == _request("r-2", method="CompleteOrder")
    settled = replace(in_flight, pending=None, version=3)
    storage.update_order(settled, 2)
    assert storage.get_order("m-1", "o-1") == settled
    with storage.transaction() as transaction:
        transaction.save_pending(replace(_pending(settled, ""), pending=None), 3)
    assert storage.get_order("m-1", "o-1") == replace(settled, version=4)
