"""A function called every interval on a daemon thread, until stopped."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()


class PeriodicTask:
    """Calls `tick` every `interval_s` (first after one interval) until `stop`.

    A tick that raises is logged and the next one runs as planned: a passing failure (an
    unreachable database) must not end the thread.
    """

    def __init__(self, name: str, interval_s: float, tick: Callable[[], object]) -> None:
        if interval_s <= 0:
            raise ValueError("the interval must be positive")
        self._interval_s = interval_s
        self._tick = tick
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                self._tick()
            except Exception:
                log.exception("periodic_task_failed", task=self._thread.name)
