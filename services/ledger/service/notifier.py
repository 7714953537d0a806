"""Wakes the entry streams of this process as soon as a write commits new entries.

Writes by other processes sharing the database are not seen here; streams also poll, so they
notice those within one poll interval.
"""

from __future__ import annotations

import threading


class EntryNotifier:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._publications = 0
        self._closed = False

    def published(self) -> None:
        """Called after a commit that appended entries."""
        with self._condition:
            self._publications += 1
            self._condition.notify_all()

    @property
    def publications(self) -> int:
        """How many commits have published entries so far; a waiter passes it back."""
        with self._condition:
            return self._publications

    def wait_for_publication_after(self, publications_seen: int, timeout_s: float) -> None:
        """Returns when a commit after `publications_seen` published, the notifier closes, or the
        timeout ends."""
        with self._condition:
            self._condition.wait_for(
                lambda: self._closed or self._publications > publications_seen,
                timeout=timeout_s,
            )

    def close(self) -> None:
        """Wakes every waiter for good: the service is shutting down."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def closed(self) -> bool:
        with self._condition:
            return self._closed
