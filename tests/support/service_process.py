"""One service of the suite as a process (`python -m services.<name>`, configured only by its
SESAME_<NAME>_* variables) on a fixed port: started, killed with SIGKILL the way a crash or an
OOM kill ends it, and started again on the same databases and port. For tests that take the
suite apart; `tests.support.suite.launched_suite` starts it whole, as `make run` does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.suite.launch import plaintext_suite

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
HEALTH_POLL_INTERVAL_S = 0.05
HEALTH_NAMES = {
    "ledger": "sesame.ledger.v1.LedgerService",
    "score": "sesame.score.v1.ScoreService",
    "waiver": "sesame.waiver.v1.WaiverService",
}


def clean_environment() -> dict[str, str]:
    """This process's environment without any SESAME_ setting, so only ours apply."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("SESAME_")}
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(REPOSITORY_ROOT), *filter(None, [environment.get("PYTHONPATH")])]
    )
    environment["PYTHONUNBUFFERED"] = "1"
    environment.update(plaintext_suite())
    return environment


class ServiceProcess:
    """`python -m services.<name>` with the given settings on a fixed port: start, kill (SIGKILL,
    the way a crash or an OOM kill ends it), start again with the same environment."""

    def __init__(self, name: str, port: int, log_path: Path, settings: dict[str, str]) -> None:
        self.name = name
        self.port = port
        self.log_path = log_path
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        assert not self.running, f"the {self.name} is already running"
        prefix = f"SESAME_{self.name.upper()}_"
        environment = clean_environment()
        environment.update(
            {f"{prefix}PORT": str(self.port), f"{prefix}LOG_LEVEL": "WARNING"}
            | {f"{prefix}{key.upper()}": value for key, value in self.settings.items()}
        )
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1}\n".encode())
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                cwd=REPOSITORY_ROOT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        self._wait_until_serving()

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        with grpc.insecure_channel(self.address) as channel:
            health: Any = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=HEALTH_NAMES[self.name])
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"the {self.name} exited with {self.process.returncode}:\n{self.log()}"
                    )
                try:
                    status = health.Check(request, timeout=1.0).status
                except grpc.RpcError:
                    status = None
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
                time.sleep(HEALTH_POLL_INTERVAL_S)
        raise RuntimeError(
            f"the {self.name} did not report SERVING within {START_TIMEOUT_S} s:\n{self.log()}"
        )

    def kill(self) -> None:
        """SIGKILL and wait until the process is gone: nothing after this line runs in it."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT_S)

    def stop(self) -> None:
        if not self.running:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-4000:]
