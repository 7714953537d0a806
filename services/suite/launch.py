"""Runs the whole suite locally: ledger, score and waiver as three processes (`make run`).

Each service is started the way a deployment starts it, `python -m services.<name>`, configured
only through its SESAME_<SERVICE>_* environment variables. The launcher waits until each one
answers its health check before starting the next (score and waiver read from the ledger), prints
their addresses, and on Ctrl-C or SIGTERM stops them all, gracefully first, in the reverse order
(the waiver while the score service and the ledger still answer it, the ledger last).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.certificates import ensure_local_certificates
from services.common.tls import TlsFiles, channel_credentials

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

    def tls_files(self, environment: dict[str, str]) -> TlsFiles | None:
        """The service's own TLS files, which the launcher also presents to check its health;
        None when it runs in plaintext."""
        prefix = self.environment_prefix
        if environment.get(f"{prefix}PLAINTEXT", "").lower() in TRUE_WORDS:
            return None
        return TlsFiles(
            Path(environment[f"{prefix}TLS_CERTIFICATE_FILE"]),
            Path(environment[f"{prefix}TLS_PRIVATE_KEY_FILE"]),
            Path(environment[f"{prefix}TLS_CA_FILE"]),
        )


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


TRUE_WORDS = ("1", "true", "yes", "on")
# `make run` runs with mutual TLS on certificates of its own under var/certs, made on first use.
LOCAL_CERTIFICATES_DIRECTORY = Path("var/certs")


def with_local_certificates(
    environment: dict[str, str], directory: Path = LOCAL_CERTIFICATES_DIRECTORY
) -> dict[str, str]:
    """The environment with each service's TLS files pointed at the local certificates, unless
    it names files of its own or asks for plaintext; the local CA and certificates are made
    when missing (`services.common.certificates`)."""
    environment = dict(environment)
    needing = [
        service
        for service in SUITE
        if environment.get(f"{service.environment_prefix}PLAINTEXT", "").lower() not in TRUE_WORDS
        and f"{service.environment_prefix}TLS_CERTIFICATE_FILE" not in environment
    ]
    if not needing:
        return environment
    paths = ensure_local_certificates(directory)
    for service in needing:
        files = paths[service.name]
        prefix = service.environment_prefix
        environment[f"{prefix}TLS_CERTIFICATE_FILE"] = str(files.certificate_file)
        environment[f"{prefix}TLS_PRIVATE_KEY_FILE"] = str(files.private_key_file)
        environment[f"{prefix}TLS_CA_FILE"] = str(files.ca_file)
    return environment


LOCAL_PSEUDONYM_KEY = Path("var/pseudonym.key")


def with_local_pseudonym_key(
    environment: dict[str, str], key_file: Path = LOCAL_PSEUDONYM_KEY
) -> dict[str, str]:
    """Every service logs user ids as pseudonyms under one key (`services.common.pseudonyms`),
    made on first use and readable by its owner only, so that one user's calls can be followed
    across the three services' logs."""
    environment = dict(environment)
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as output:
            output.write(secrets.token_hex(32))
    for service in SUITE:
        environment.setdefault(f"{service.environment_prefix}PSEUDONYM_KEY_FILE", str(key_file))
    return environment


def plaintext_suite() -> dict[str, str]:
    """The settings that run every service of the suite in plaintext, for the offline tools
    that start a private suite on loopback (simulate, score_csv, the benchmarks): explicit, as
    plaintext must be, and announced by each service when it starts."""
    return {f"{service.environment_prefix}PLAINTEXT": "true" for service in SUITE}


def free_port() -> int:
    """A loopback port that is free now. A process started with it binds a moment later, which
    is good enough locally: a clash makes start-up fail loudly, never serve the wrong thing."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_serving(
    address: str,
    grpc_service: str,
    process: subprocess.Popen[bytes],
    tls_files: TlsFiles | None = None,
) -> None:
    """Polls the standard health service until the service reports SERVING; over mutual TLS
    with `tls_files`."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with _channel(address, tls_files) as channel:
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


def _channel(address: str, tls_files: TlsFiles | None) -> grpc.Channel:
    if tls_files is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, channel_credentials(tls_files))


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stops the services in the reverse of the order they started, each before the next, so
    that a service finishes its calls in flight while the services it calls still answer: SIGTERM
    first (each service drains its calls), SIGKILL only past the timeout."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
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
            wait_until_serving(
                address, service.grpc_service, process, service.tls_files(environment)
            )
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
    environment = suite_environment(
        with_local_pseudonym_key(
            with_local_certificates(with_local_checkpoint_key(dict(os.environ)))
        )
    )
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
        transport = "plaintext" if service.tls_files(environment) is None else "mutual TLS"
        print(f"  {service.grpc_service:34} {HOST}:{service.port(environment)}  {transport}")
    if any(service.tls_files(environment) for service in SUITE):
        print(f"Client certificates: {LOCAL_CERTIFICATES_DIRECTORY}/ (README: Calling a service)")
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
