"""PeriodicTask: ticks until stopped, a failing tick does not end it, and once `stop` has
returned no tick runs again."""

from __future__ import annotations

import threading
import time

import pytest
import structlog

from services.common.periodic import PeriodicTask

WAIT_S = 5.0
INTERVAL_S = 0.001


def thread_names() -> set[str]:
    return {thread.name for thread in threading.enumerate()}


def test_a_failing_tick_is_logged_and_the_next_ones_still_run() -> None:
    ticks: list[int] = []
    third_tick = threading.Event()

    def tick() -> None:
        ticks.append(len(ticks))
        if len(ticks) == 1:
            raise ConnectionError("the database went away")
        if len(ticks) == 3:
            third_tick.set()

    task = PeriodicTask("failing-probe", INTERVAL_S, tick)
    with structlog.testing.capture_logs() as captured:
        task.start()
        assert third_tick.wait(WAIT_S)
        task.stop()

    failures = [line for line in captured if line["event"] == "periodic_task_failed"]
    assert [line["task"] for line in failures] == ["failing-probe"]
    assert ticks[:3] == [0, 1, 2]


def test_stop_lets_a_running_tick_finish_and_returns_once_the_thread_has_ended() -> None:
    task_name = "stopping-probe"
    ticks_finished: list[bool] = []
    tick_running = threading.Event()
    task: PeriodicTask

    def tick() -> None:
        tick_running.set()
        # Holds this tick until `stop` has begun: `stop` must then wait for it to finish.
        deadline = time.monotonic() + WAIT_S
        while not task.stopping and time.monotonic() < deadline:
            time.sleep(INTERVAL_S)
        ticks_finished.append(task.stopping)

    task = PeriodicTask(task_name, INTERVAL_S, tick)
    task.start()
    assert tick_running.wait(WAIT_S)
    assert task_name in thread_names()

    task.stop()

    # The tick that was running has finished, and the thread that runs ticks has ended, so
    # no tick can follow.
    assert ticks_finished == [True]
    assert task_name not in thread_names()


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PeriodicTask("probe", 0, lambda: None)
