"""Predictable server-assigned ids."""

from __future__ import annotations

import itertools
import threading


class SequentialIds:
    """Predictable ids (hold_1, hold_2, ...) for tests that want to name them in advance."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def _next(self) -> int:
        with self._lock:
            return next(self._counter)

    def new_hold_id(self) -> str:
        return f"hold_{self._next()}"

    def new_obligation_id(self) -> str:
        return f"obligation_{self._next()}"
