"""Fixtures for the ledger's resilience tests: the ledger as a real process (`python -m
services.ledger`, configured by SESAME_LEDGER_* variables) over a fresh database, SQLite or
PostgreSQL, that a test can kill and restart on the same database and port.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sesame.ledger.v1 import ledger_service_pb2 as pb, ledger_service_pb2_grpc

from services.suite.launch import free_port
from tests.support.service_process import ServiceProcess, clean_environment

# Channels reconnect quickly, so that a client notices a restarted ledger within a second.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
)


def ledger_process(database_url: str, port: int, log_path: Path, **settings: str) -> ServiceProcess:
    """`python -m services.ledger` on a given database and port, creating its schema, with a
    short grace period: start, kill, start again."""
    return ServiceProcess(
        "ledger",
        port,
        log_path,
        {"database_url": database_url, "create_schema": "true", "grace_period_s": "1", **settings},
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def resilience_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database for one ledger process: a new SQLite file, or a new PostgreSQL database
    (dropped at the end of the run)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    factory: Callable[[], str] = request.getfixturevalue("postgres_database_factory")
    return factory()


@pytest.fixture
def start_ledger(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Starts a ledger process on a database and a free port; every one is stopped at the end."""
    started: list[ServiceProcess] = []

    def start(database_url: str, **settings: str) -> ServiceProcess:
        ledger = ledger_process(
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
