"""A clock that moves only when told to."""

from __future__ import annotations

import threading

from services.common.clock import MICROSECONDS_PER_SECOND


class FakeClock:
    """A clock that moves only when told to, for tests (safe to share between threads)."""

    def __init__(self, start_us: int = 1_767_225_600 * MICROSECONDS_PER_SECOND) -> None:
        # The default start, 2026-01-01T00:00:00Z, is arbitrary but fixed so tests repeat.
        self._now_us = start_us
        self._lock = threading.Lock()

    def now_us(self) -> int:
        with self._lock:
            return self._now_us

    def advance(self, *, seconds: float = 0, microseconds: int = 0) -> int:
        """Moves the clock forward and returns the new time."""
        step_us = round(seconds * MICROSECONDS_PER_SECOND) + microseconds
        assert step_us >= 0, "time never goes backwards"
        with self._lock:
            self._now_us += step_us
            return self._now_us

    def set(self, now_us: int) -> None:
        with self._lock:
            assert now_us >= self._now_us, "time never goes backwards"
            self._now_us = now_us
