"""Where services get the time: integer microseconds since the Unix epoch, UTC.

Services take a `Clock` and never read the time themselves, so tests and simulations can run
them on a time of their own.
"""

from __future__ import annotations

import mmap
import struct
import time
from pathlib import Path
from typing import Protocol

MICROSECONDS_PER_SECOND = 1_000_000
CLOCK_FILE_BYTES = 8


class Clock(Protocol):
    def now_us(self) -> int: ...


class SystemClock:
    """The real time."""

    def now_us(self) -> int:
        return time.time_ns() // 1000


class FileClock:
    """A time set by another process: microseconds since the epoch, read from a file of eight
    bytes that the controlling process rewrites (`ClockFile`). For simulations and tests only,
    which run several services on one time they move forward themselves."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self._map = mmap.mmap(self._file.fileno(), CLOCK_FILE_BYTES, access=mmap.ACCESS_READ)

    def now_us(self) -> int:
        now_us: int = struct.unpack_from("<q", self._map)[0]
        return now_us

    def close(self) -> None:
        self._map.close()
        self._file.close()


class ClockFile:
    """Writes the time that `FileClock`s read; time only moves forward."""

    def __init__(self, path: Path, start_us: int) -> None:
        self.path = path
        path.write_bytes(struct.pack("<q", start_us))
        self._now_us = start_us

    def now_us(self) -> int:
        return self._now_us

    def set(self, now_us: int) -> None:
        if now_us < self._now_us:
            raise ValueError("time never goes backwards")
        with self.path.open("r+b") as file:
            file.write(struct.pack("<q", now_us))
        self._now_us = now_us

    def advance(self, seconds: float) -> int:
        self.set(self._now_us + round(seconds * MICROSECONDS_PER_SECOND))
        return self._now_us


def clock_from_setting(clock_file: str) -> Clock:
    """The system clock, or a `FileClock` when a clock file is named (simulations and tests)."""
    return FileClock(Path(clock_file)) if clock_file else SystemClock()
