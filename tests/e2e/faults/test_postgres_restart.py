"""PostgreSQL crashed and started again in the middle of a load: the services recover by
themselves (none is restarted) and lose nothing acknowledged.

The ledger and the waiver keep their databases on a PostgreSQL cluster of this test's own
(`tests.support.private_postgres`, never the server other tests share). Client threads run order
flows through the waiver (`tests.support.order_flows`), retrying UNAVAILABLE with the same
request id. Twice, once the load has moved on, the cluster is stopped the way a crash stops it
(every connection cut, no checkpoint) and started again a moment later; every connection the
services' pools hold is then dead. Then every flow's order is what its last answer said, and the
orders and the ledger agree (`order_flows.check`).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sesame.ledger.v1 import ledger_service_pb2_grpc
from sesame.waiver.v1 import waiver_service_pb2_grpc

from tests.support.faulty_suite import FaultySuite, start_faulty_suite, stop_everything
from tests.support.order_flows import (
    Flow,
    Progress,
    check,
    client as run_client,
    grant_flow_consents,
    put_policy,
    wait_until_nothing_is_pending,
)
from tests.support.private_postgres import PrivatePostgres, server_programs

pytestmark = pytest.mark.slow

CLIENTS = 4
CRASHES = 2
STEPS_BETWEEN_CRASHES = 8
DOWN_FOR_S = 1.0
LOAD_DEADLINE_S = 300.0


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    if server_programs() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("initdb is not installed (CI requires it for the PostgreSQL restart)")
        pytest.skip("SKIPPING: initdb is not installed, no private PostgreSQL cluster")
    cluster = PrivatePostgres()
    try:
        yield cluster.create()
    finally:
        cluster.remove()


@pytest.fixture
def suite(postgres: PrivatePostgres, tmp_path: Path) -> Iterator[FaultySuite]:
    started: list[Any] = []
    try:
        yield start_faulty_suite(
            tmp_path,
            postgres.create_database("ledger"),
            postgres.create_database("waiver"),
            started,
        )
    finally:
        stop_everything(started)


def _crash_postgres(
    postgres: PrivatePostgres, progress: Progress, deadline: float, failures: list[str]
) -> None:
    try:
        for _ in range(CRASHES):
            with progress.lock:
                target = progress.steps_answered + STEPS_BETWEEN_CRASHES
            while time.monotonic() < deadline and not progress.aborted.is_set():
                with progress.lock:
                    if progress.steps_answered >= target:
                        break
                time.sleep(0.02)
            else:
                failures.append("the load stopped before a crash")
                return
            postgres.crash()
            time.sleep(DOWN_FOR_S)
            postgres.start()
    except BaseException as error:
        failures.append(f"the crash thread failed: {error!r}\n{postgres.log()}")
        progress.aborted.set()
    finally:
        progress.chaos_done.set()


def test_the_services_recover_from_a_postgres_crash_by_themselves(
    postgres: PrivatePostgres, suite: FaultySuite
) -> None:
    put_policy(suite.waiver.address)
    grant_flow_consents(suite.ledger.address, CLIENTS)
    starts = {name: service.starts for name, service in suite.services.items()}
    progress = Progress()
    deadline = time.monotonic() + LOAD_DEADLINE_S
    flows_by_client: dict[int, list[Flow]] = {number: [] for number in range(CLIENTS)}
    failures: list[str] = []
    clients = [
        threading.Thread(
            target=run_client,
            args=(number, suite.waiver.address, progress, deadline, flows_by_client[number]),
            name=f"client-{number}",
        )
        for number in range(CLIENTS)
    ]
    crasher = threading.Thread(
        target=_crash_postgres, args=(postgres, progress, deadline, failures), name="crasher"
    )
    for thread in (*clients, crasher):
        thread.start()
    for thread in (crasher, *clients):
        thread.join(LOAD_DEADLINE_S + 60)
    assert not any(thread.is_alive() for thread in (*clients, crasher)), "a thread never finished"

    logs = "\n".join(f"--- {name}\n{service.log()}" for name, service in suite.services.items())
    assert not failures, f"{failures}\n{logs}"
    flows = [flow for client_flows in flows_by_client.values() for flow in client_flows]
    unfinished = {flow.out_order_no: flow.problem for flow in flows if flow.problem}
    assert not unfinished, f"flows that did not finish: {unfinished}\n{logs}"
    assert progress.retries, "no call was cut by the crashes"
    assert {name: service.starts for name, service in suite.services.items()} == starts, (
        "a service was restarted"
    )
    assert all(service.running for service in suite.services.values()), logs

    wait_until_nothing_is_pending(suite.waiver_database_url)
    with (
        grpc.insecure_channel(suite.waiver.address) as waiver_channel,
        grpc.insecure_channel(suite.ledger.address) as ledger_channel,
    ):
        summary = check(
            waiver_service_pb2_grpc.WaiverServiceStub(waiver_channel),
            ledger_service_pb2_grpc.LedgerServiceStub(ledger_channel),
            flows,
        )
    print(
        f"\n{len(flows)} flows ({dict(Counter(flow.kind for flow in flows))}),"
        f" {progress.steps_answered} steps answered; {CRASHES} PostgreSQL crashes;"
        f" retries {dict(progress.retries)}; {summary}"
    )
