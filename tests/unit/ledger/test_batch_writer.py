"""Group commit never leaves a caller waiting: every request taken into a batch gets an answer,
whatever the batch's transaction raised, and no wait outlasts the writer's wait timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from services.common.errors import Unavailable
from services.ledger.domain import reasons
from services.ledger.service.batch_writer import BatchWriter, WriteJob
from services.ledger.service.notifier import EntryNotifier
from services.ledger.service.ports import StorageConflict
from services.ledger.service.retry import RetryPolicy
from tests.support.clock import FakeClock

CALLERS = 8
PROMPTLY_S = 5.0


class LeaderDied(BaseException):
    """Stands for anything that ends a leader's run without an ordinary exception."""


class GatedFailingStorage:
    """A storage whose write transactions fail with `error`; the first one waits at `gate` until
    the test has queued every other request behind it, so that they form one batch."""

    write_concurrency = 1

    def __init__(self, error: Callable[[], BaseException]) -> None:
        self._error = error
        self.first_write_started = threading.Event()
        self.gate = threading.Event()
        self.writes = 0

    @contextmanager
    def write(self) -> Iterator[Any]:
        self.writes += 1
        self.first_write_started.set()
        self.gate.wait(PROMPTLY_S)
        raise self._error()
        yield  # pragma: no cover


def job(request_id: str) -> WriteJob:
    return WriteJob(
        method="PlaceHold",
        request_id=request_id,
        request_hash="hash-" + request_id,
        result_type=dict,
        decide=lambda scope: {},
        user_ids=("user-1",),
    )


def writer(storage: GatedFailingStorage, **options: Any) -> BatchWriter:
    return BatchWriter(
        storage,  # type: ignore[arg-type]
        FakeClock(),
        EntryNotifier(),
        RetryPolicy(attempts=3, backoff_initial_s=0.001, backoff_max_s=0.002),
        **options,
    )


def submit_concurrently(
    batch_writer: BatchWriter, storage: GatedFailingStorage, request_ids: list[str]
) -> tuple[dict[str, BaseException | None], list[threading.Thread]]:
    """Submits the first request, waits until its batch is running, queues the others behind
    it, then lets the storage fail; returns each caller's error once all have returned."""
    errors: dict[str, BaseException | None] = {}

    def call(request_id: str) -> None:
        try:
            batch_writer.submit(job(request_id))
            errors[request_id] = None
        except BaseException as error:
            errors[request_id] = error

    threads = [threading.Thread(target=call, args=(rid,), daemon=True) for rid in request_ids]
    threads[0].start()
    assert storage.first_write_started.wait(PROMPTLY_S)
    for thread in threads[1:]:
        thread.start()
    deadline = time.monotonic() + PROMPTLY_S
    while batch_writer.queued_count < len(request_ids) - 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    storage.gate.set()
    for thread in threads:
        thread.join(max(0.0, deadline + PROMPTLY_S - time.monotonic()))
    return errors, threads


def assert_contended(error: BaseException | None) -> None:
    assert isinstance(error, Unavailable), repr(error)
    assert error.reason == reasons.STORAGE_CONTENDED


@pytest.mark.parametrize("distinct_request_ids", [True, False])
def test_every_caller_returns_when_retries_run_out(distinct_request_ids: bool) -> None:
    storage = GatedFailingStorage(lambda: StorageConflict("could not serialize access"))
    batch_writer = writer(storage)
    request_ids = [f"req-{i}" if distinct_request_ids else "req-same" for i in range(CALLERS)]

    errors, threads = submit_concurrently(batch_writer, storage, request_ids)

    assert not any(thread.is_alive() for thread in threads), "a caller is still waiting"
    assert len(errors) == len(set(request_ids))
    for error in errors.values():
        assert_contended(error)
    assert batch_writer.queued_count == 0


def test_every_caller_returns_when_the_leader_dies_mid_batch() -> None:
    storage = GatedFailingStorage(LeaderDied)
    batch_writer = writer(storage)
    request_ids = [f"req-{i}" for i in range(CALLERS)]

    errors, threads = submit_concurrently(batch_writer, storage, request_ids)

    assert not any(thread.is_alive() for thread in threads), "a caller is still waiting"
    # req-0 ran alone; the others queued behind it and req-1 led them in the next batch, whose
    # leader died too, before handing out any outcome.
    assert isinstance(errors["req-0"], LeaderDied)
    assert isinstance(errors["req-1"], LeaderDied)
    for request_id in request_ids[2:]:
        assert_contended(errors[request_id])
    assert batch_writer.queued_count == 0


def test_every_caller_gets_its_own_error_when_the_batch_fails_unexpectedly() -> None:
    storage = GatedFailingStorage(lambda: RuntimeError("disk on fire"))
    batch_writer = writer(storage)
    request_ids = [f"req-{i}" for i in range(CALLERS)]

    errors, threads = submit_concurrently(batch_writer, storage, request_ids)

    assert not any(thread.is_alive() for thread in threads), "a caller is still waiting"
    assert all(isinstance(errors[rid], RuntimeError) for rid in request_ids)
    # The shared transaction, then each request on its own.
    assert storage.writes == 1 + CALLERS


def test_a_wait_times_out_with_unavailable_instead_of_hanging() -> None:
    storage = GatedFailingStorage(lambda: StorageConflict("could not serialize access"))
    batch_writer = writer(storage, wait_timeout_s=0.2)
    errors: dict[str, BaseException | None] = {}

    def call(request_id: str) -> None:
        try:
            batch_writer.submit(job(request_id))
        except BaseException as error:
            errors[request_id] = error

    leader = threading.Thread(target=call, args=("req-leader",), daemon=True)
    leader.start()
    assert storage.first_write_started.wait(PROMPTLY_S)
    started = time.monotonic()
    call("req-waiter")  # the leader's batch is stuck at the gate
    waited_s = time.monotonic() - started

    assert_contended(errors["req-waiter"])
    assert 0.15 <= waited_s < PROMPTLY_S
    assert batch_writer.queued_count == 0, "the abandoned request left the queue"
    storage.gate.set()
    leader.join(PROMPTLY_S)
    assert not leader.is_alive()
