"""The thread that follows credit histories resumes the entry stream after the last sequence it
processed, and tells its consumer when it has caught up and when it may have fallen behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import structlog

from services.common.history_watch import CacheInvalidator, CaughtUp, EntryNotice
from tests.support.waiting import until

WAIT_S = 5.0


class FlakyStream:
    """Serves entries 1-3, fails, then serves what follows the sequence it is resumed from."""

    def __init__(self) -> None:
        self.resumed_after: list[int] = []
        self.entries = [
            EntryNotice(1, "u-1"),
            EntryNotice(2, "u-2"),
            EntryNotice(3, "u-1"),
            EntryNotice(4, "u-3"),
        ]
        self._stop = threading.Event()

    def watch_entries(self, after_global_sequence: int) -> Iterator[EntryNotice]:
        self.resumed_after.append(after_global_sequence)
        for entry in self.entries:
            if entry.global_sequence > after_global_sequence:
                yield entry
            if entry.global_sequence == 3 and len(self.resumed_after) == 1:
                raise ConnectionError("the ledger went away")
        self._stop.wait()

    def cancel_watch(self) -> None:
        self._stop.set()


def test_the_stream_resumes_after_the_last_entry_processed() -> None:
    stream = FlakyStream()
    invalidated: list[tuple[str, int]] = []
    invalidator = CacheInvalidator(
        stream,
        lambda user_id, sequence: invalidated.append((user_id, sequence)),
        backoff_initial_s=0.01,
    )

    invalidator.start()
    until(lambda: len(invalidated) >= 4, WAIT_S)
    invalidator.stop()

    assert stream.resumed_after[:2] == [0, 3]
    assert invalidated == [("u-1", 1), ("u-2", 2), ("u-1", 3), ("u-3", 4)]
    assert invalidator.last_global_sequence == 4


class CatchingUpStream:
    """The first watch delivers two entries, says it has caught up, delivers one more and fails;
    the second delivers the rest, says so, and waits."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.entries = [EntryNotice(sequence, f"u-{sequence}") for sequence in range(1, 5)]
        self.watches = 0
        self._stop = threading.Event()

    def watch_entries(self, after_global_sequence: int | None) -> Iterator[EntryNotice | CaughtUp]:
        assert after_global_sequence is not None
        self.watches += 1
        pending = [entry for entry in self.entries if entry.global_sequence > after_global_sequence]
        if self.watches == 1:
            yield from pending[:2]
            yield CaughtUp(2)
            yield pending[2]
            raise ConnectionError("the ledger went away")
        yield from pending
        yield CaughtUp(4)
        self._stop.wait()

    def cancel_watch(self) -> None:
        self._stop.set()


def test_the_consumer_hears_when_the_stream_has_caught_up_and_when_it_may_be_behind() -> None:
    events: list[str] = []
    stream = CatchingUpStream(events)
    invalidator = CacheInvalidator(
        stream,
        lambda user_id, sequence: events.append(user_id),
        on_caught_up=lambda: events.append("caught up"),
        on_behind=lambda: events.append("behind"),
        backoff_initial_s=0.01,
    )

    invalidator.start()
    until(lambda: events.count("caught up") >= 2, WAIT_S)
    invalidator.stop()

    assert events == [
        "u-1", "u-2", "caught up", "u-3", "behind", "u-4", "caught up", "behind"
    ]  # fmt: skip


class RenewingStream:
    """Each watch delivers at most two entries after the sequence it starts from, then ends
    without an error, as a watch does when it reaches its deadline."""

    def __init__(self) -> None:
        self.resumed_after: list[int] = []
        self.entries = [EntryNotice(sequence, f"u-{sequence}") for sequence in range(1, 8)]
        self._stop = threading.Event()

    def watch_entries(self, after_global_sequence: int) -> Iterator[EntryNotice]:
        self.resumed_after.append(after_global_sequence)
        pending = [entry for entry in self.entries if entry.global_sequence > after_global_sequence]
        if not pending:
            self._stop.wait()  # an idle watch, until `stop` cancels it
        yield from pending[:2]

    def cancel_watch(self) -> None:
        self._stop.set()


def test_a_watch_that_reached_its_deadline_is_resumed_at_once_where_it_stopped() -> None:
    stream = RenewingStream()
    invalidated: list[tuple[str, int]] = []
    invalidator = CacheInvalidator(
        stream,
        lambda user_id, sequence: invalidated.append((user_id, sequence)),
        # A pause after a renewal would outlast the wait below.
        backoff_initial_s=WAIT_S * 10,
    )

    with structlog.testing.capture_logs() as captured:
        invalidator.start()
        # Until the watch after the last entry has started (and waits for more).
        until(lambda: len(stream.resumed_after) >= 5, WAIT_S)
        invalidator.stop()

    assert stream.resumed_after == [0, 2, 4, 6, 7]
    assert invalidated == [(f"u-{sequence}", sequence) for sequence in range(1, 8)]
    assert invalidator.renewals == 4
    assert invalidator.interruptions == 0
    assert [line for line in captured if line["log_level"] == "warning"] == []


class AgedOutStream:
    """The first watch delivers two entries and, a minute later, is cut (as a ledger ageing its
    connections out cuts the calls on an old one); the next delivers the rest."""

    def __init__(self) -> None:
        self.now_s = 0.0
        self.resumed_after: list[int] = []
        self.entries = [EntryNotice(sequence, f"u-{sequence}") for sequence in range(1, 5)]
        self._stop = threading.Event()

    def watch_entries(self, after_global_sequence: int) -> Iterator[EntryNotice]:
        self.resumed_after.append(after_global_sequence)
        pending = [entry for entry in self.entries if entry.global_sequence > after_global_sequence]
        if len(self.resumed_after) == 1:
            yield from pending[:2]
            self.now_s += 60.0
            raise ConnectionError("the connection was aged out")
        yield from pending
        self._stop.wait()

    def cancel_watch(self) -> None:
        self._stop.set()


def test_a_watch_cut_after_it_had_been_running_is_resumed_at_once_without_a_warning() -> None:
    stream = AgedOutStream()
    invalidated: list[tuple[str, int]] = []
    invalidator = CacheInvalidator(
        stream,
        lambda user_id, sequence: invalidated.append((user_id, sequence)),
        backoff_initial_s=WAIT_S * 10,
        clock=lambda: stream.now_s,
    )

    with structlog.testing.capture_logs() as captured:
        invalidator.start()
        until(lambda: len(invalidated) >= 4, WAIT_S)
        invalidator.stop()

    assert stream.resumed_after == [0, 2]
    assert invalidated == [(f"u-{sequence}", sequence) for sequence in range(1, 5)]
    assert (invalidator.resumptions, invalidator.interruptions) == (1, 0)
    assert [line["event"] for line in captured if line["log_level"] != "debug"] == [
        "entry_stream_resumed"
    ]


class FromNowStream:
    """A ledger whose newest entry is 7: a watch from now says so first; a watch after a
    sequence gets what follows it."""

    def __init__(self) -> None:
        self.asked: list[int | None] = []
        self._stop = threading.Event()

    def watch_entries(self, after_global_sequence: int | None) -> Iterator[EntryNotice | CaughtUp]:
        self.asked.append(after_global_sequence)
        if after_global_sequence is None:
            yield CaughtUp(7)
            return  # the watch's deadline, before any entry
        yield EntryNotice(8, "u-8")
        self._stop.wait()

    def cancel_watch(self) -> None:
        self._stop.set()


def test_a_watch_from_now_resumes_where_the_first_said_it_began() -> None:
    stream = FromNowStream()
    invalidated: list[tuple[str, int]] = []
    invalidator = CacheInvalidator(
        stream,
        lambda user_id, sequence: invalidated.append((user_id, sequence)),
        start_from_now=True,
    )

    invalidator.start()
    until(lambda: invalidated, WAIT_S)
    invalidator.stop()

    assert stream.asked == [None, 7]
    assert invalidated == [("u-8", 8)]
