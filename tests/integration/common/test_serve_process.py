"""`serve` and `serve_aio` in their own process, as a service runs them: JSON lines out, SIGTERM
to stop, the hooks in their order."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
WAIT_S = 10.0

# Formatted with the runtime's module and serving function.
SERVE_WITH_NO_SERVICES = """
import structlog
from services.common.{module} import {serve}
from services.common.settings import ServerSettings, load_settings

log = structlog.get_logger()
{serve}(
    load_settings(ServerSettings),
    [],
    service_name="probe",
    on_stopping=lambda: log.info("streams_ended"),
    on_stop=lambda: log.info("resources_released"),
)
"""
RUNTIMES = {"sync": ("server", "serve"), "asyncio": ("aio_server", "serve_aio")}


class LineReader:
    """Reads a process's output on a thread, so that a test waits with a timeout."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        self._stdout = process.stdout
        threading.Thread(target=self._read_all, daemon=True).start()

    def _read_all(self) -> None:
        for line in self._stdout:
            self._lines.put(line)

    def next_event(self, event: str) -> dict[str, object]:
        while True:
            line = json.loads(self._lines.get(timeout=WAIT_S))
            if line["event"] == event:
                return dict(line)


@pytest.fixture(params=sorted(RUNTIMES))
def serving_process(request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[str]]:
    module, serve = RUNTIMES[request.param]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("SESAME_")}
    environment.update(
        PYTHONPATH=str(REPOSITORY_ROOT),
        PYTHONUNBUFFERED="1",
        SESAME_PORT="0",
        SESAME_GRACE_PERIOD_S="0.2",
    )
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_WITH_NO_SERVICES.format(module=module, serve=serve)],
        cwd=REPOSITORY_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
    )
    yield process
    if process.poll() is None:
        process.kill()
    process.wait(WAIT_S)


def test_serve_logs_its_address_serves_health_and_stops_cleanly_on_sigterm(
    serving_process: subprocess.Popen[str],
) -> None:
    output = LineReader(serving_process)

    started = output.next_event("server_started")
    assert started["service"] == "probe"
    assert started["level"] == "info"
    assert started["address"] == f"127.0.0.1:{started['port']}"
    with grpc.insecure_channel(str(started["address"])) as channel:
        # The health stubs' type hints omit the generated methods.
        health: Any = health_pb2_grpc.HealthStub(channel)
        response = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=WAIT_S)
        assert response.status == health_pb2.HealthCheckResponse.SERVING

    serving_process.send_signal(signal.SIGTERM)

    assert output.next_event("server_stopping")["signal"] == "SIGTERM"
    output.next_event("streams_ended")
    output.next_event("resources_released")
    output.next_event("server_stopped")
    assert serving_process.wait(WAIT_S) == 0
