"""WatchEntries: the backlog, then new entries as they commit; resumable; ends promptly."""

from __future__ import annotations

import queue
import threading
import time

import grpc
import pytest
from sesame.ledger.v1 import ledger_service_pb2 as pb, ledger_service_pb2_grpc
from sesame.type.v1.money_pb2 import Money

from services.common.grpc_errors import error_details
from services.common.server import create_server
from services.ledger.app import build_ledger
from services.ledger.service.recent_entries import RecentEntries
from services.ledger.storage.sql_storage import open_ledger_storage

RECEIVE_TIMEOUT_S = 5.0


class Watcher:
    """Reads a WatchEntries stream on a thread of its own, so a test can wait with a timeout."""

    def __init__(self, stub, after_global_sequence: int, **options: bool) -> None:
        self.call = stub.WatchEntries(
            pb.WatchEntriesRequest(after_global_sequence=after_global_sequence, **options),
            timeout=60,
        )
        self.received: queue.Queue[object] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for response in self.call:
                self.received.put(
                    response.caught_up if response.HasField("caught_up") else response.entry
                )
        except grpc.RpcError as error:
            self.received.put(error)

    def next_entry(self) -> pb.Entry:
        item = self.received.get(timeout=RECEIVE_TIMEOUT_S)
        assert isinstance(item, pb.Entry), item
        return item

    def next_message(self) -> pb.Entry | pb.CaughtUp:
        item = self.received.get(timeout=RECEIVE_TIMEOUT_S)
        assert isinstance(item, pb.Entry | pb.CaughtUp), item
        return item

    def next_error(self) -> grpc.RpcError:
        item = self.received.get(timeout=RECEIVE_TIMEOUT_S)
        assert isinstance(item, grpc.RpcError), item
        return item


@pytest.fixture
def watch(stub):
    watchers: list[Watcher] = []

    def start(after_global_sequence: int = 0, **options: bool) -> Watcher:
        watcher = Watcher(stub, after_global_sequence, **options)
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


def test_a_credit_history_watch_leaves_out_holds_capacity_and_checkpoints(client, watch):
    client.set_capacity("user-a", 10_000)
    hold = client.place_hold("user-a", 2_000)
    client.capture(hold.hold_id, 1_500)
    released = client.place_hold("user-a", 100)
    client.release(released.hold_id, fulfilled=True)
    obligation = client.create_obligation("user-b", 700)
    client.pay(obligation.obligation_id, 700)
    watcher = watch(credit_history_only=True)

    backlog = [watcher.next_entry() for _ in range(3)]
    client.set_capacity("user-b", 1_000)  # left out
    client.close_obligation(obligation.obligation_id, pb.OBLIGATION_OUTCOME_ON_TIME)
    new = watcher.next_entry()

    assert [entry.type for entry in backlog] == [
        pb.ENTRY_TYPE_HOLD_CAPTURED,
        pb.ENTRY_TYPE_OBLIGATION_CREATED,
        pb.ENTRY_TYPE_PAYMENT_RECORDED,
    ]
    assert (new.user_id, new.type) == ("user-b", pb.ENTRY_TYPE_OBLIGATION_CLOSED)
    assert watcher.received.empty()


def caught_up(global_sequence: int) -> pb.CaughtUp:
    return pb.CaughtUp(global_sequence=global_sequence)


def test_a_watch_that_asks_says_once_when_it_has_caught_up(client, watch):
    for user in ("user-a", "user-b"):
        client.set_capacity(user, 1_000)
        client.create_obligation(user, 500)
    everything = watch(report_caught_up=True)
    history_only = watch(credit_history_only=True, report_caught_up=True)
    plain = watch()

    before = [everything.next_message() for _ in range(5)]
    history_before = [history_only.next_message() for _ in range(3)]
    client.create_obligation("user-a", 200)

    assert [entry.global_sequence for entry in before[:4]] == [1, 2, 3, 4]
    assert before[4] == caught_up(4)
    assert [entry.global_sequence for entry in history_before[:2]] == [2, 4]
    assert history_before[2] == caught_up(4)
    assert everything.next_entry().global_sequence == 5
    assert history_only.next_entry().global_sequence == 5
    # A watch that did not ask is told nothing but entries.
    assert [plain.next_entry().global_sequence for _ in range(5)] == [1, 2, 3, 4, 5]
    for watcher in (everything, history_only, plain):
        assert watcher.received.empty()


def test_a_watch_of_an_empty_stretch_is_caught_up_at_once(client, watch):
    client.set_capacity("user-a", 1_000)

    watcher = watch(after_global_sequence=1, credit_history_only=True, report_caught_up=True)

    assert watcher.next_message() == caught_up(1)


def test_a_watch_from_now_skips_what_was_committed_and_names_where_it_starts(client, watch):
    client.set_capacity("user-a", 1_000)
    client.create_obligation("user-a", 500)
    watcher = watch(from_now=True, report_caught_up=True)
    silent = watch(from_now=True)

    assert watcher.next_message() == caught_up(2)
    client.create_obligation("user-b", 300)

    assert watcher.next_entry().global_sequence == 3
    assert silent.next_entry().global_sequence == 3


def test_a_watch_from_now_after_a_sequence_is_refused_naming_the_field(stub):
    with pytest.raises(grpc.RpcError) as refused:
        next(
            iter(
                stub.WatchEntries(
                    pb.WatchEntriesRequest(after_global_sequence=3, from_now=True), timeout=5
                )
            )
        )

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(refused.value) == ("VALUE_OUT_OF_RANGE", ("after_global_sequence",))


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


def test_every_stream_receives_every_entry_once_and_in_order_while_writes_go_on(client, watch):
    client.set_capacity("user-0", 1_000)
    watchers = [watch() for _ in range(3)]
    writes_per_thread = 15
    writers = [
        threading.Thread(
            target=lambda user=f"user-{index}": [
                client.set_capacity(user, 1_000 + n) for n in range(writes_per_thread)
            ]
        )
        for index in range(4)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()

    written = 1 + 4 * writes_per_thread
    for watcher in watchers:
        sequences = [watcher.next_entry().global_sequence for _ in range(written)]
        assert sequences == list(range(1, written + 1))
        assert watcher.received.empty()


def test_a_stream_receives_what_another_ledger_process_commits(
    client, watch, ledger_settings, clock
):
    client.set_capacity("user-a", 1_000)
    watcher = watch()
    assert watcher.next_entry().global_sequence == 1
    other = build_ledger(ledger_settings, clock=clock)
    other_server = create_server(ledger_settings, [other.registration])
    other_server.server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{other_server.port}") as channel:
            ledger_service_pb2_grpc.LedgerServiceStub(channel).SetWaiverCapacity(
                pb.SetWaiverCapacityRequest(
                    request_id="from-the-other-process",
                    user_id="user-b",
                    capacity=Money(currency_code="CNY", amount_minor=2_000),
                    reason="test",
                ),
                timeout=RECEIVE_TIMEOUT_S,
            )

        entry = watcher.next_entry()
    finally:
        other.service.begin_shutdown()
        other_server.server.stop(0).wait()
        other.close()

    assert (entry.global_sequence, entry.user_id) == (2, "user-b")


def test_more_entries_than_the_recent_tail_holds_all_reach_a_reader(client, ledger_settings):
    storage = open_ledger_storage(ledger_settings.database_url)
    recent = RecentEntries(storage, capacity=3, poll_interval_s=60)
    try:
        assert recent.after(0, publications=0, limit=10) == []  # the journal is empty
        for amount in range(8):
            client.set_capacity("user-a", 1_000 + amount)

        # A reader that keeps up: each call may find more committed than the tail holds.
        received: list[int] = []
        for publications in range(1, 6):
            page = recent.after(received[-1] if received else 0, publications, limit=3)
            assert page is not None, "a reader that keeps up never falls behind the tail"
            received += [typed.entry.global_sequence for typed in page]

        assert received == list(range(1, 9))
        assert recent.after(0, publications=20, limit=10) is None  # older than the tail
    finally:
        storage.close()
