"""`python -m services.ledger` as a process configured by environment variables only, and the
operator's `sesame-ledger-admin` against it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sesame.ledger.v1 import ledger_service_pb2 as pb, ledger_service_pb2_grpc
from sesame.type.v1 import money_pb2

from services.common.grpc_errors import error_details
from services.ledger import admin

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
# A grace period no stop should wait out, and a bound well inside it: a functional check that
# the stop did not wait for the grace period to end, not a measure of how fast it is.
LONG_GRACE_PERIOD_S = 60
SHUTDOWN_BOUND_S = 30.0
PORT_LINE = re.compile(r'"event": "server_started"')


@pytest.fixture(scope="module")
def ledger_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    directory = tmp_path_factory.mktemp("ledger-process")
    process = _start_ledger(directory, SESAME_LEDGER_SWEEP_INTERVAL_S="0.2")
    started = _wait_for_start(process)
    yield {"process": process, "address": f"127.0.0.1:{started['port']}"}
    _kill_if_running(process)


def _start_ledger(directory: Path, **settings: str) -> subprocess.Popen[str]:
    """`python -m services.ledger` on a SQLite file in `directory`, with extra settings."""
    environment = dict(os.environ)
    environment.update(
        PYTHONPATH=str(REPOSITORY_ROOT),
        SESAME_LEDGER_PORT="0",
        SESAME_LEDGER_PLAINTEXT="true",
        SESAME_LEDGER_DATABASE_URL=f"sqlite:///{directory / 'ledger.db'}",
        **settings,
    )
    return subprocess.Popen(
        [sys.executable, "-m", "services.ledger"],
        cwd=directory,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _kill_if_running(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def _wait_for_start(process: subprocess.Popen[str]) -> dict[str, object]:
    assert process.stdout is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"the ledger exited with {process.wait()} before starting")
        if PORT_LINE.search(line):
            started: dict[str, object] = json.loads(line)
            return started
    raise AssertionError("the ledger did not log server_started in time")


@pytest.fixture(scope="module")
def stub(ledger_process) -> Iterator[ledger_service_pb2_grpc.LedgerServiceStub]:
    with grpc.insecure_channel(str(ledger_process["address"])) as channel:
        yield ledger_service_pb2_grpc.LedgerServiceStub(channel)


def test_the_process_serves_and_sweeps_expired_holds_in_the_background(stub):
    stub.SetWaiverCapacity(
        pb.SetWaiverCapacityRequest(
            request_id="capacity",
            user_id="user-1",
            capacity=money_pb2.Money(currency_code="CNY", amount_minor=1_000),
        ),
        timeout=10,
    )
    request = pb.PlaceHoldRequest(
        request_id="hold",
        user_id="user-1",
        amount=money_pb2.Money(currency_code="CNY", amount_minor=100),
    )
    request.expires_in.seconds = 1
    stub.PlaceHold(request, timeout=10)

    deadline = time.monotonic() + 10
    types: list[int] = []
    while time.monotonic() < deadline and pb.ENTRY_TYPE_HOLD_EXPIRED not in types:
        time.sleep(0.2)
        page = stub.ListEntries(pb.ListEntriesRequest(user_id="user-1"), timeout=10)
        types = [entry.type for entry in page.entries]

    assert types[-1] == pb.ENTRY_TYPE_HOLD_EXPIRED


def test_the_admin_tool_reads_verifies_and_sweeps(ledger_process, stub, capsys):
    address = ["--address", str(ledger_process["address"]), "--plaintext"]

    assert admin.main([*address, "verify"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert admin.main([*address, "summary", "user-1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert admin.main([*address, "entries", "--user", "user-1", "--limit", "2"]) == 0
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert admin.main([*address, "sweep"]) == 0
    swept = json.loads(capsys.readouterr().out)

    assert report["intact"] is True
    assert summary["user_id"] == "user-1"
    assert [entry["user_sequence"] for entry in entries] == ["1", "2"]
    assert swept == {"expired_count": 0}


def test_the_admin_tool_fails_on_a_refused_call(ledger_process, capsys):
    exit_code = admin.main(
        ["--address", str(ledger_process["address"]), "--plaintext", "summary", ""]
    )

    assert exit_code == admin.EXIT_CALL_FAILED
    assert "FIELD_REQUIRED" in capsys.readouterr().err


def test_the_admin_tool_migrates_a_database(tmp_path, capsys):
    database_url = f"sqlite:///{tmp_path / 'migrated.db'}"

    assert admin.main(["migrate", "--database-url", database_url]) == 0
    assert json.loads(capsys.readouterr().out) == {"migrated": True}


def test_sigterm_stops_the_process_cleanly(ledger_process, stub):
    process = ledger_process["process"]
    assert isinstance(process, subprocess.Popen)

    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=STOP_TIMEOUT_S) == 0


def test_sigterm_ends_entry_streams_with_shutting_down_without_waiting_out_the_grace(tmp_path):
    process = _start_ledger(tmp_path, SESAME_LEDGER_GRACE_PERIOD_S=str(LONG_GRACE_PERIOD_S))
    try:
        address = f"127.0.0.1:{_wait_for_start(process)['port']}"
        with grpc.insecure_channel(address) as channel:
            stub = ledger_service_pb2_grpc.LedgerServiceStub(channel)
            stub.SetWaiverCapacity(
                pb.SetWaiverCapacityRequest(
                    request_id="capacity",
                    user_id="user-1",
                    capacity=money_pb2.Money(currency_code="CNY", amount_minor=1_000),
                ),
                timeout=10,
            )
            # A deadline short of the grace period: a stream left to the end of the grace
            # period would end with DEADLINE_EXCEEDED instead.
            entries = stub.WatchEntries(
                pb.WatchEntriesRequest(after_global_sequence=0), timeout=SHUTDOWN_BOUND_S
            )
            next(entries)  # the stream is open, and its handler waits for the next entry

            process.send_signal(signal.SIGTERM)

            with pytest.raises(grpc.RpcError) as ended:
                next(entries)
        exit_code = process.wait(timeout=SHUTDOWN_BOUND_S)
    finally:
        _kill_if_running(process)

    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_details(ended.value).reason == "SHUTTING_DOWN"
    assert exit_code == 0
