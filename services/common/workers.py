"""Several worker processes serving one port, sized from the CPU the process may really use.

Python runs one thread of Python code at a time, so a gRPC server uses one core however many
threads it has; a service that is CPU-bound (the score service) runs one worker process per
core instead, every worker binding the same port with SO_REUSEPORT so that the kernel spreads
new connections over them.

How many cores: a container's CPU quota (cgroup v2 `cpu.max`, or cgroup v1
`cpu.cfs_quota_us` / `cpu.cfs_period_us`), rounded down and at least one, never more than the
CPUs the process may be scheduled on. The host's core count is not the answer: a pod limited to
two CPUs on a 64-core node that started 64 workers would spend its quota switching between them.

The parent process only supervises: it starts the workers (spawned, so none inherits the
parent's state), forwards SIGTERM and SIGINT to them, and when one worker exits on its own it
stops the others and exits non-zero, so that the orchestrator restarts the whole pod rather than
leaving it running short-handed. With metrics enabled, the workers record into a shared
directory (prometheus_client's multiprocess mode) and the parent serves the sum on the one
metrics port.
"""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from pathlib import Path

import structlog

from services.common.stop_signals import StopSignals, handling_stop_signals

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
# prometheus_client reads this variable when it is imported, in every worker.
PROMETHEUS_MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
POLL_INTERVAL_S = 0.1
WORKER_STOP_TIMEOUT_S = 30.0


# ----------------------------------------------------------------------------------------------
# How many workers


def cpu_quota(
    cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP
) -> float | None:
    """The CPUs this process's cgroup may use (2.5 for a quota of 250ms per 100ms), or None
    when no quota is set or none can be read."""
    for directory in _cgroup_directories(cgroup_root, proc_cgroup):
        quota = _cgroup_v2_quota(directory) or _cgroup_v1_quota(directory)
        if quota is not None:
            return quota
    return None


def schedulable_cpus() -> int:
    """The CPUs the process may be scheduled on (its affinity), else the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count(setting: int, quota: float | None = None, cpus: int | None = None) -> int:
    """`setting` when positive; for 0, one worker per CPU of the quota, at least one."""
    if setting < 0:
        raise ValueError("the worker count must not be negative")
    if setting > 0:
        return setting
    cpus = schedulable_cpus() if cpus is None else cpus
    quota = cpu_quota() if quota is None else quota
    usable = cpus if quota is None else min(cpus, quota)
    return max(1, math.floor(usable))


def _cgroup_directories(cgroup_root: Path, proc_cgroup: Path) -> list[Path]:
    """Where this process's CPU controller files may be: its own cgroup, then the root."""
    directories = []
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _hierarchy, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controllers == "":  # cgroup v2: one unified hierarchy
            directories.append(cgroup_root / relative)
        elif "cpu" in controllers.split(","):
            directories.append(cgroup_root / controllers / relative)
            directories.append(cgroup_root / "cpu" / relative)
    directories += [cgroup_root, cgroup_root / "cpu"]
    return list(dict.fromkeys(directories))


def _cgroup_v2_quota(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def _cgroup_v1_quota(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


# ----------------------------------------------------------------------------------------------
# Running them


def run_workers(
    count: int,
    worker_main: Callable[[], None],
    *,
    name: str,
    metrics_endpoint: Callable[[], Callable[[], None] | None] | None = None,
) -> int:
    """Runs `count` processes of the picklable `worker_main` until they stop; the exit code.

    `metrics_endpoint`, when given, is called once the metrics directory is set up and starts
    the one endpoint serving every worker's metrics; it returns how to stop it.
    """
    if count < 1:
        raise ValueError("at least one worker is needed")
    with (
        handling_stop_signals() as stop_signals,
        tempfile.TemporaryDirectory(prefix=f"sesame-{name}-metrics-") as metrics_directory,
        _environment_variable(PROMETHEUS_MULTIPROC_VARIABLE, metrics_directory),
    ):
        # The variable is set before any worker starts: spawned workers inherit it and so
        # record their metrics into files in the directory.
        stop_metrics = metrics_endpoint() if metrics_endpoint is not None else None
        context = multiprocessing.get_context("spawn")
        workers = [
            context.Process(target=_run_worker, args=(worker_main,), name=f"{name}-worker-{index}")
            for index in range(count)
        ]
        try:
            for worker in workers:
                worker.start()
            log.info("workers_started", workers=count, pids=[worker.pid for worker in workers])
            exit_code = _supervise(workers, stop_signals)
        finally:
            _stop_all(workers, signal.SIGTERM)
            if stop_metrics is not None:
                stop_metrics()
    log.info("workers_stopped", exit_code=exit_code)
    return exit_code


def _run_worker(worker_main: Callable[[], None]) -> None:
    """A worker's entry point: `worker_main`, stopped gracefully if the supervisor dies.

    A supervisor killed outright (SIGKILL, OOM) cannot forward anything; without this its
    workers would keep serving the port as orphans.
    """
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_stop_when_gone, args=(parent.sentinel,), name="supervisor-watch", daemon=True
        ).start()
    worker_main()


def _stop_when_gone(parent_sentinel: int) -> None:
    multiprocessing.connection.wait([parent_sentinel])
    os.kill(os.getpid(), signal.SIGTERM)


@contextmanager
def _environment_variable(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def _supervise(workers: Sequence[BaseProcess], stop_signals: StopSignals) -> int:
    """Waits for a stop signal (forwarded to every worker) or for a worker to exit alone."""
    while stop_signals.received is None:
        exited = [worker for worker in workers if not worker.is_alive()]
        if exited:
            log.error(
                "worker_exited",
                worker=exited[0].name,
                exit_code=exited[0].exitcode,
                action="stopping the other workers",
            )
            return 1
        time.sleep(POLL_INTERVAL_S)
    log.info("workers_stopping", signal=stop_signals.received.name)
    _stop_all(workers, stop_signals.received)
    # A worker still starting up when the signal came has no handler yet and ends by the
    # signal itself: that is the stop that was asked for, not a failure.
    stopped_cleanly = (0, -stop_signals.received.value)
    failed = [worker.exitcode for worker in workers if worker.exitcode not in stopped_cleanly]
    return 1 if failed else 0


def _stop_all(workers: Sequence[BaseProcess], stop_signal: signal.Signals) -> None:
    """Sends `stop_signal` to every live worker and waits; kills those still running then."""
    for worker in workers:
        if worker.is_alive() and worker.pid is not None:
            os.kill(worker.pid, stop_signal)
    deadline = time.monotonic() + WORKER_STOP_TIMEOUT_S
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            log.error("worker_killed", worker=worker.name)
            worker.kill()
            worker.join()


# ----------------------------------------------------------------------------------------------
# What the workers share


class SharedText:
    """A short text the workers share, with a generation that moves on every publish.

    Created in the supervising process and handed to every worker when it is spawned; a worker
    publishes (a model version it swapped to), the others read it and follow.
    """

    def __init__(self, size_bytes: int = 128) -> None:
        context = multiprocessing.get_context("spawn")
        self._lock = context.Lock()
        self._generation = context.Value("q", 0, lock=False)
        self._text = context.Array("c", size_bytes, lock=False)

    def publish(self, text: str) -> None:
        """Stores `text` under a new generation; raises ValueError when it is too long."""
        encoded = text.encode()
        if len(encoded) >= len(self._text):
            raise ValueError(f"at most {len(self._text) - 1} bytes can be shared")
        with self._lock:
            self._text.value = encoded
            self._generation.value += 1

    def read(self) -> tuple[int, str]:
        """(generation, text); generation 0 means nothing was published yet."""
        with self._lock:
            return self._generation.value, self._text.value.decode()
