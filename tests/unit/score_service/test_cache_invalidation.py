"""The invalidation thread resumes the entry stream after the last sequence it processed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from services.score.service.cache_invalidation import CacheInvalidator
from services.score.service.ports import EntryNotice

WAIT_S = 5.0


class FlakyStream:
    """Serves entries 1-3, fails, then serves what follows the sequence it is resumed from."""

    def __init__(self) -> None:
        self.resumed_after: list[int] = []
        self.entries = [
            EntryNotice(1, "u-1", True),
            EntryNotice(2, "u-2", True),
            EntryNotice(3, "u-1", True),
            EntryNotice(4, "u-3", True),
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
    deadline = time.monotonic() + WAIT_S
    while len(invalidated) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    invalidator.stop()

    assert stream.resumed_after[:2] == [0, 3]
    assert invalidated == [("u-1", 1), ("u-2", 2), ("u-1", 3), ("u-3", 4)]
    assert invalidator.last_global_sequence == 4


def test_an_entry_outside_the_credit_history_keeps_the_users_cached_values() -> None:
    stream = FlakyStream()
    stream.entries = [EntryNotice(1, "u-1", False), EntryNotice(2, "u-2", True)]
    invalidated: list[tuple[str, int]] = []
    invalidator = CacheInvalidator(
        stream, lambda user_id, sequence: invalidated.append((user_id, sequence))
    )

    invalidator.start()
    deadline = time.monotonic() + WAIT_S
    while invalidator.last_global_sequence < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    invalidator.stop()

    assert invalidated == [("u-2", 2)]
    assert invalidator.last_global_sequence == 2
