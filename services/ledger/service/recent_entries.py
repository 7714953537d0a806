"""The journal's latest entries, read once for all the entry streams of this process.

Several streams watch at once (each score worker has its own), and a commit wakes them all. The
first stream woken reads the new entries into a bounded tail and every other stream takes them
from there, so the journal is read once per commit, not once per watcher. A stream behind the
tail (a backlog, a resume from long ago) reads the journal itself.

Commits of other ledger processes sharing the database wake no stream here; the tail is read
again when a stream asks after half its poll interval, so those are seen within one interval.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable

from services.ledger.service.ports import LedgerStorage
from services.ledger.service.typed_entries import TypedEntry, typed_entries


class RecentEntries:
    """A tail of the journal: every entry after `after` up to the newest read, at most
    `capacity` of them."""

    def __init__(
        self,
        storage: LedgerStorage,
        *,
        capacity: int,
        poll_interval_s: float,
        monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        assert capacity > 0 and poll_interval_s > 0
        self._storage = storage
        self._capacity = capacity
        self._poll_interval_s = poll_interval_s
        self._monotonic_s = monotonic_s
        self._lock = threading.Lock()
        # The tail holds every entry with after < global_sequence <= newest; None until first
        # read.
        self._after: int | None = None
        self._newest = 0
        self._entries: list[TypedEntry] = []
        self._sequences: list[int] = []
        # The notifier's publication count taken before the last read: every commit published
        # up to it is in the tail.
        self._publications_read = -1
        self._read_at_s = 0.0

    def after(self, cursor: int, publications: int, limit: int) -> list[TypedEntry] | None:
        """The entries after `cursor` (at most `limit`), oldest first, or None when the tail
        starts after `cursor` and the caller must read the journal.

        `publications` is the notifier's count, taken by the caller before this call: the tail
        is read again unless it already holds every commit published up to it (and is younger
        than the poll interval, for other processes' commits).
        """
        with self._lock:
            stale = self._monotonic_s() - self._read_at_s >= self._poll_interval_s / 2
            if publications > self._publications_read or stale:
                self._read(publications)
            assert self._after is not None
            if cursor < self._after:
                return None
            start = bisect.bisect_right(self._sequences, cursor)
            return self._entries[start : start + limit]

    def _read(self, publications: int) -> None:
        with self._storage.read() as reader:
            if self._after is None:
                # Streams start from here; whatever is older they read from the journal.
                self._after = self._newest = reader.head_global_sequence()
                new: list[TypedEntry] = []
            else:
                new = typed_entries(reader.entries_after(self._newest, self._capacity), reader)
        if len(new) < self._capacity:
            # Everything committed by then is read; a full page may have left more behind, for
            # the next call to read.
            self._publications_read = max(self._publications_read, publications)
            self._read_at_s = self._monotonic_s()
        if not new:
            return
        assert new[0].entry.global_sequence > self._newest
        self._entries.extend(new)
        self._sequences.extend(typed.entry.global_sequence for typed in new)
        self._newest = self._sequences[-1]
        excess = len(self._entries) - self._capacity
        if excess > 0:
            self._after = self._sequences[excess - 1]
            del self._entries[:excess]
            del self._sequences[:excess]
