"""Where services get the time: integer microseconds since the Unix epoch, UTC.

Services take a `Clock` and never read the time themselves, so tests and simulations can run
them on a time of their own.
"""

from __future__ import annotations

import time
from typing import Protocol

MICROSECONDS_PER_SECOND = 1_000_000


class Clock(Protocol):
    def now_us(self) -> int: ...


class SystemClock:
    """The real time."""

    def now_us(self) -> int:
        return time.time_ns() // 1000
