"""PeriodicTask: ticks until stopped, and a failing tick does not end it."""

from __future__ import annotations

import time

from services.common.periodic import PeriodicTask

WAIT_S = 5.0


def test_a_failing_tick_is_logged_and_the_next_ones_still_run() -> None:
    ticks: list[int] = []

    def tick() -> None:
        ticks.append(len(ticks))
        if len(ticks) == 1:
            raise ConnectionError("the database went away")

    task = PeriodicTask("probe", 0.01, tick)
    task.start()
    deadline = time.monotonic() + WAIT_S
    while len(ticks) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    task.stop()
    stopped_at = len(ticks)
    time.sleep(0.05)

    assert stopped_at >= 3
    assert len(ticks) == stopped_at  # nothing runs after stop
    assert task.stopping
