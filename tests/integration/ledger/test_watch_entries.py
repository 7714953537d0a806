"""WatchEntries: the backlog, then new entries as they commit; resumable; ends promptly."""

from __future__ import annotations

import queue
import threading
import time

import grpc
import pytest
from sesame.ledger.v1 import ledger_service_pb2 as pb

from services.common.grpc_errors import error_details

RECEIVE_TIMEOUT_S = 5.0


class Watcher:
    """Reads a WatchEntries stream on a thread of its own, so a test can wait with a timeout."""

    def __init__(self, stub, after_global_sequence: int) -> None:
        self.call = stub.WatchEntries(
            pb.WatchEntriesRequest(after_global_sequence=after_global_sequence), timeout=60
        )
        self.received: queue.Queue[object] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for response in self.call:
                self.received.put(response.entry)
        except grpc.RpcError as error:
            self.received.put(error)

    def next_entry(self) -> pb.Entry:
        item = self.received.get(timeout=RECEIVE_TIMEOUT_S)
        assert isinstance(item, pb.Entry), item
        return item

    def next_error(self) -> grpc.RpcError:
        item = self.received.get(timeout=RECEIVE_TIMEOUT_S)
        assert isinstance(item, grpc.RpcError), item
        return item


@pytest.fixture
def watch(stub):
    watchers: list[Watcher] = []

    def start(after_global_sequence: int = 0) -> Watcher:
        watcher = Watcher(stub, after_global_sequence)
        watchers.append(watcher)
        return watcher

    yield start
    for watcher in watchers:
        watcher.call.cancel()


def test_the_backlog_comes_first_then_entries_as_they_commit(client, watch):
    for user in ("user-a", "user-b", "user-c"):
        client.set_capacity(user, 1_000)
    watcher = watch()

    backlog = [watcher.next_entry() for _ in range(3)]
    client.place_hold("user-b", 10)
    new = watcher.next_entry()

    assert [entry.global_sequence for entry in backlog] == [1, 2, 3]
    assert new.global_sequence == 4
    assert (new.user_id, new.type) == ("user-b", pb.ENTRY_TYPE_HOLD_PLACED)


def test_a_stream_resumes_after_the_given_sequence(client, watch):
    for _ in range(4):
        client.set_capacity("user-a", 1_000)

    watcher = watch(after_global_sequence=2)

    assert [watcher.next_entry().global_sequence for _ in range(2)] == [3, 4]


def test_a_cancelled_stream_releases_its_worker_promptly(client, watch, server):
    client.set_capacity("user-a", 1_000)
    watcher = watch()
    watcher.next_entry()

    watcher.call.cancel()
    watcher.thread.join(RECEIVE_TIMEOUT_S)
    started = time.monotonic()
    server.server.stop(10).wait()

    # A stream still running would hold the stop for its whole grace period.
    assert time.monotonic() - started < 2.0


def test_streams_end_with_unavailable_when_the_ledger_shuts_down(client, watch, ledger):
    client.set_capacity("user-a", 1_000)
    watcher = watch()
    watcher.next_entry()

    ledger.service.begin_shutdown()
    error = watcher.next_error()

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error_details(error).reason == "SHUTTING_DOWN"
