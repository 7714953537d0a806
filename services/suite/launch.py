"""Runs the whole suite locally: ledger, score and waiver as three processes (`make run`).

Each service is started the way a deployment starts it, `python -m services.<name>`, configured
only through its SESAME_<SERVICE>_* environment variables. The launcher waits until each one
answers its health check before starting the next (score and waiver read from the ledger), prints
their addresses, and on Ctrl-C or SIGTERM stops them all, gracefully first.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
HEALTH_POLL_INTERVAL_S = 0.2


@dataclass(frozen=True)
class ServiceProcess:
    """One service of the suite as the launcher runs it."""

    name: str
    grpc_service: str
    default_port: int

    @property
    def environment_prefix(self) -> str:
        return f"SESAME_{self.name.upper()}_"

    def port(self, environment: dict[str, str]) -> int:
        return int(environment.get(f"{self.environment_prefix}PORT", self.default_port))


SUITE = (
    ServiceProcess("ledger", "sesame.ledger.v1.LedgerService", 50051),
    ServiceProcess("score", "sesame.score.v1.ScoreService", 50052),
    ServiceProcess("waiver", "sesame.waiver.v1.WaiverService", 50053),
)


def suite_environment(base: dict[str, str]) -> dict[str, str]:
    """Fills in how the services find each other, unless the caller set it already."""
    environment = dict(base)
    ledger, score, _ = SUITE
    ledger_address = f"{HOST}:{ledger.port(environment)}"
    score_address = f"{HOST}:{score.port(environment)}"
    for service in SUITE:
        environment.setdefault(f"{service.environment_prefix}PORT", str(service.port(environment)))
    environment.setdefault("SESAME_SCORE_LEDGER_ADDRESS", ledger_address)
    environment.setdefault("SESAME_WAIVER_LEDGER_ADDRESS", ledger_address)
    environment.setdefault("SESAME_WAIVER_SCORE_ADDRESS", score_address)
    return environment


def free_port() -> int:
    """A loopback port that is free now. A process started with it binds a moment later, which
    is good enough locally: a clash makes start-up fail loudly, never serve the wrong thing."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_serving(address: str, grpc_service: str, process: subprocess.Popen[bytes]) -> None:
    """Polls the standard health service until the service reports SERVING."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{grpc_service} exited with code {process.returncode}")
            try:
                # The published type stub of HealthStub lists no methods.
                reply = health.Check(  # type: ignore[attr-defined]
                    health_pb2.HealthCheckRequest(service=grpc_service), timeout=1.0
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(HEALTH_POLL_INTERVAL_S)
    raise RuntimeError(f"{grpc_service} did not become SERVING within {STARTUP_TIMEOUT_S} s")


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM first (each service drains its calls), SIGKILL only past the timeout."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_suite(environment: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    """Starts every service in order and returns once all of them are SERVING."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for service in SUITE:
            process = subprocess.Popen(
                [sys.executable, "-m", f"services.{service.name}"], env=environment
            )
            processes.append(process)
            address = f"{HOST}:{service.port(environment)}"
            wait_until_serving(address, service.grpc_service, process)
    except BaseException:
        stop_all(processes)
        raise
    return processes


def _interrupt(signal_number: int, frame: object) -> None:
    raise KeyboardInterrupt


# `make run` signs ledger checkpoints with a key of its own under var/, made on first use.
LOCAL_CHECKPOINTS = {
    "SESAME_LEDGER_CHECKPOINT_KEY_FILE": "var/checkpoint-key.pem",
    "SESAME_LEDGER_CHECKPOINT_LOG_FILE": "var/checkpoints.jsonl",
    "SESAME_LEDGER_CHECKPOINT_INTERVAL_S": "60",
}


def with_local_checkpoint_key(environment: dict[str, str]) -> dict[str, str]:
    """The environment with the local checkpoint settings (those not set already), and the key
    file they name made when missing, its public half beside it (`.pub`), by the ledger's
    admin tool: the suite reaches the ledger only through processes and contracts."""
    environment = {**LOCAL_CHECKPOINTS, **environment}
    key_file = Path(environment["SESAME_LEDGER_CHECKPOINT_KEY_FILE"])
    if not key_file.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "services.ledger.admin",
                "new-checkpoint-key",
                "--key-file",
                str(key_file),
                "--public-key-file",
                str(key_file.with_suffix(".pub")),
            ],
            env=environment,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return environment


def main() -> int:
    Path("var").mkdir(exist_ok=True)
    environment = suite_environment(with_local_checkpoint_key(dict(os.environ)))
    # SIGTERM (from a process manager) stops the suite the same way Ctrl-C does. SIGINT gets
    # its handler explicitly too: a shell starts background jobs with SIGINT ignored, and
    # Python then leaves it ignored.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _interrupt)
    try:
        processes = start_suite(environment)
    except RuntimeError as error:
        print(f"sesame: failed to start: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print("\nSesame is running:")
    for service in SUITE:
        print(f"  {service.grpc_service:34} {HOST}:{service.port(environment)}")
    print("Press Ctrl-C to stop.\n", flush=True)
    try:
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        print("sesame: a service exited; stopping the others", file=sys.stderr)
        return_code = 1
    except KeyboardInterrupt:
        return_code = 0
    stop_all(processes)
    print("Sesame stopped.")
    return return_code


if __name__ == "__main__":
    sys.exit(main())
