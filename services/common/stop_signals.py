"""SIGTERM and SIGINT, remembered for the main thread to act on.

    with handling_stop_signals() as stop_signals:
        ...start things...
        received = stop_signals.wait()

The handler only assigns an attribute: a handler that took a lock (as `Event.set` does) could
deadlock with the main thread it interrupts, if that thread held the same lock.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
POLL_INTERVAL_S = 0.1


class StopSignals:
    """Remembers the first stop signal received."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None

    def handle(self, signal_number: int, _frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signal_number)

    def wait(self) -> signal.Signals:
        while self.received is None:
            time.sleep(POLL_INTERVAL_S)
        return self.received


@contextmanager
def handling_stop_signals() -> Iterator[StopSignals]:
    """Remembers SIGTERM and SIGINT while inside; the previous handlers come back after."""
    stop_signals = StopSignals()
    previous_handlers = {kind: signal.signal(kind, stop_signals.handle) for kind in STOP_SIGNALS}
    try:
        yield stop_signals
    finally:
        for kind, previous_handler in previous_handlers.items():
            signal.signal(kind, previous_handler)
