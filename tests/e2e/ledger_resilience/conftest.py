"""Fixtures for the ledger's resilience tests: the ledger as a real process (`python -m
services.ledger`, configured by SESAME_LEDGER_* variables) over a fresh database, SQLite or
PostgreSQL, that a test can kill and restart on the same database and port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sesame.ledger.v1 import ledger_service_pb2 as pb, ledger_service_pb2_grpc

from services.suite.launch import free_port

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
SERVICE_NAME = "sesame.ledger.v1.LedgerService"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
# Channels reconnect quickly, so that a client notices a restarted ledger within a second.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
)


def clean_environment() -> dict[str, str]:
    """This process's environment without any SESAME_ setting, so only ours apply."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("SESAME_")}
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(REPOSITORY_ROOT), *filter(None, [environment.get("PYTHONPATH")])]
    )
    environment["PYTHONUNBUFFERED"] = "1"
    environment["SESAME_LEDGER_PLAINTEXT"] = "true"
    return environment


class LedgerProcess:
    """`python -m services.ledger` on a given database and port; start, kill, start again."""

    def __init__(self, database_url: str, port: int, log_path: Path, **settings: str) -> None:
        self.database_url = database_url
        self.port = port
        self.log_path = log_path
        self.settings = settings
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        environment = clean_environment()
        environment.update(
            SESAME_LEDGER_PORT=str(self.port),
            SESAME_LEDGER_DATABASE_URL=self.database_url,
            SESAME_LEDGER_CREATE_SCHEMA="true",
            SESAME_LEDGER_GRACE_PERIOD_S="1",
            SESAME_LEDGER_LOG_LEVEL="WARNING",
        )
        environment.update({f"SESAME_LEDGER_{k.upper()}": v for k, v in self.settings.items()})
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1}\n".encode())
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.ledger"],
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
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    pytest.fail(f"the ledger exited with {self.process.returncode}:\n{self.log()}")
                try:
                    response = health.Check(
                        health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=1.0
                    )
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        pytest.fail(f"the ledger did not report SERVING within {START_TIMEOUT_S} s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, no flushing, the way a crash or an OOM kill ends it."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT_S)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-4000:]


@pytest.fixture(params=["sqlite", "postgresql"])
def resilience_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database for one ledger process: a new SQLite file, or a new PostgreSQL database
    (dropped at the end of the run)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    factory: Callable[[], str] = request.getfixturevalue("postgres_database_factory")
    return factory()


@pytest.fixture
def start_ledger(tmp_path: Path) -> Iterator[Callable[..., LedgerProcess]]:
    """Starts a ledger process on a database and a free port; every one is stopped at the end."""
    started: list[LedgerProcess] = []

    def start(database_url: str, **settings: str) -> LedgerProcess:
        ledger = LedgerProcess(
            database_url, free_port(), tmp_path / f"ledger-{len(started)}.log", **settings
        )
        started.append(ledger)
        ledger.start()
        return ledger

    yield start
    for ledger in started:
        ledger.stop()


# ----------------------------------------------------------------------------------------------
# Reading the ledger back


def read_journal(stub: Any, user_id: str = "") -> list[pb.Entry]:
    """Every journal entry (of one user, or all), in global sequence order."""
    entries: list[pb.Entry] = []
    token = ""
    for _ in range(100_000):
        page = stub.ListEntries(
            pb.ListEntriesRequest(user_id=user_id, page_size=1000, page_token=token), timeout=30
        )
        entries.extend(page.entries)
        token = page.next_page_token
        if not token:
            break
    else:
        raise AssertionError("ListEntries never ended")
    sequences = [entry.global_sequence for entry in entries]
    assert sequences == sorted(set(sequences)), "entries out of global order or repeated"
    return entries


def payload(entry: pb.Entry) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(entry.payload_json)
    return decoded


def assert_chains_verify(stub: Any, user_ids: list[str]) -> pb.VerifyChainResponse:
    report = stub.VerifyChain(pb.VerifyChainRequest(), timeout=60)
    assert report.intact, report.first_mismatch
    for user_id in user_ids:
        mine = stub.VerifyChain(pb.VerifyChainRequest(user_id=user_id), timeout=60)
        assert mine.intact, mine.first_mismatch
    return report


def placements_within_capacity(entries: list[pb.Entry]) -> dict[str, int]:
    """Replays the journal in global order and checks that no placement took a user's open,
    unexpired holds above the capacity in force; returns the most holds ever open at once,
    per user."""
    capacity: dict[str, int] = {}
    open_holds: dict[str, dict[str, tuple[int, int]]] = {}
    most_open: dict[str, int] = {}
    resolved: set[str] = set()
    for entry in entries:
        fact = payload(entry)
        holds = open_holds.setdefault(entry.user_id, {})
        if entry.type == pb.ENTRY_TYPE_CAPACITY_SET:
            capacity[entry.user_id] = fact["capacity_minor"]
        elif entry.type == pb.ENTRY_TYPE_HOLD_PLACED:
            placed_at = fact["placed_at_us"]
            in_use = [amount for amount, expires_at in holds.values() if expires_at > placed_at]
            assert sum(in_use) + fact["amount_minor"] <= capacity.get(entry.user_id, 0), (
                f"hold {fact['hold_id']} (global sequence {entry.global_sequence}) took"
                f" {entry.user_id} to {sum(in_use) + fact['amount_minor']},"
                f" above the capacity {capacity.get(entry.user_id, 0)}"
            )
            holds[fact["hold_id"]] = (fact["amount_minor"], fact["expires_at_us"])
            most_open[entry.user_id] = max(most_open.get(entry.user_id, 0), len(in_use) + 1)
        elif entry.type in (
            pb.ENTRY_TYPE_HOLD_CAPTURED,
            pb.ENTRY_TYPE_HOLD_RELEASED,
            pb.ENTRY_TYPE_HOLD_EXPIRED,
        ):
            hold_id = fact["hold_id"]
            assert hold_id not in resolved, f"hold {hold_id} resolved twice"
            assert hold_id in holds, f"hold {hold_id} resolved before it was placed"
            resolved.add(hold_id)
            del holds[hold_id]
    return most_open


@pytest.fixture
def ledger_reading() -> Any:
    """The helpers above, for test modules (which cannot import this conftest)."""

    class Reading:
        journal = staticmethod(read_journal)
        payload = staticmethod(payload)
        chains_verify = staticmethod(assert_chains_verify)
        placements_within_capacity = staticmethod(placements_within_capacity)
        channel_options = CHANNEL_OPTIONS
        environment = staticmethod(clean_environment)

    return Reading


def connect(address: str) -> tuple[grpc.Channel, Any]:
    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    return channel, ledger_service_pb2_grpc.LedgerServiceStub(channel)


@pytest.fixture
def ledger_connect() -> Callable[[str], tuple[grpc.Channel, Any]]:
    return connect
