"""The whole suite started as `make run` starts it (the launcher and three processes), on free
ports, for tests that need all three services as separate processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from services.suite.launch import free_port

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
SERVICE_NAMES = ("ledger", "score", "waiver")
STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0


@contextmanager
def launched_suite(
    work_directory: Path, environment_overrides: Mapping[str, str] | None = None
) -> Iterator[dict[str, str]]:
    """Starts the launcher in `work_directory`; yields each service's address by name, and
    stops the suite (gracefully, as Ctrl-C does) on the way out."""
    ports = {name: free_port() for name in SERVICE_NAMES}
    environment = dict(os.environ)
    environment["PYTHONPATH"] = str(REPOSITORY_ROOT)
    for name, port in ports.items():
        environment[f"SESAME_{name.upper()}_PORT"] = str(port)
    environment.update(environment_overrides or {})
    launcher = subprocess.Popen(
        [sys.executable, "-m", "services.suite.launch"],
        cwd=work_directory,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so that nothing outlives a failure
    )
    assert launcher.stdout is not None
    output: list[str] = []
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        line = launcher.stdout.readline()
        if not line and launcher.poll() is not None:
            break
        output.append(line)
        if line.startswith("Press Ctrl-C"):
            break
    if not any(line.startswith("Press Ctrl-C") for line in output):
        os.killpg(launcher.pid, signal.SIGKILL)
        raise RuntimeError("the suite did not start:\n" + "".join(output))
    # The services log a line per call to this pipe: it must be read all along, or once it is
    # full every service blocks on its next log line.
    drain = threading.Thread(
        target=lambda: output.extend(launcher.stdout or ()), name="suite-output", daemon=True
    )
    drain.start()
    try:
        yield {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    finally:
        lines_before_stop = len(output)
        launcher.send_signal(signal.SIGINT)
        try:
            launcher.wait(timeout=STOP_TIMEOUT_S)
        finally:
            if launcher.poll() is None:
                os.killpg(launcher.pid, signal.SIGKILL)
            drain.join(timeout=STOP_TIMEOUT_S)
    # Only reached when the block using the suite ended without an error of its own.
    if launcher.returncode != 0 or "Sesame stopped." not in "".join(output):
        raise RuntimeError("the suite did not stop cleanly:\n" + "".join(output))
    # Stopping is routine: no service may complain about it (a dependency gone first, say).
    # Stopping begins with the first service's "server_stopping" line: lines written before
    # the signal may still have been in the pipe when it was sent.
    stopping_from = next(
        (index for index, line in enumerate(output) if '"server_stopping"' in line),
        lines_before_stop,
    )
    complaints = [line for line in output[stopping_from:] if _is_complaint(line)]
    if complaints:
        raise RuntimeError("the suite complained while it stopped:\n" + "".join(complaints))


def _is_complaint(line: str) -> bool:
    """A JSON log line at warning level or above."""
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and record.get("level") in ("warning", "error", "critical")
