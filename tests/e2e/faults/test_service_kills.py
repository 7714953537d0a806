"""Each service of the suite killed with SIGKILL under load, and started again on the same
databases and port: no acknowledged write is lost, none is applied twice, every chain verifies,
every hold belongs to an order. On SQLite and on PostgreSQL.

Client threads run order flows through the waiver (`tests.support.order_flows`: create,
complete, pay or cancel, retried with the same request id on UNAVAILABLE, DEADLINE_EXCEEDED and
ORDER_BUSY). A chaos thread kills the ledger, the score service and the waiver in turn, twice
each, each time once the load has moved on, and starts the victim again after a random pause.
The others are never restarted: they find their dependency again by themselves. Then, once no
order is pending, the orders and the ledger are checked against each other through the two
contracts (`order_flows.check`).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import grpc
import pytest
from sesame.ledger.v1 import ledger_service_pb2_grpc
from sesame.waiver.v1 import waiver_service_pb2_grpc

from tests.support.faulty_suite import FaultySuite
from tests.support.order_flows import (
    Flow,
    Progress,
    check,
    client as run_client,
    grant_flow_consents,
    put_policy,
    wait_until_nothing_is_pending,
)

pytestmark = pytest.mark.slow

CLIENTS = 4
VICTIMS = ("ledger", "score", "waiver") * 2
STEPS_BETWEEN_KILLS = 6
DOWN_FOR_S = (0.0, 1.5)
LOAD_DEADLINE_S = 300.0


def _chaos(
    suite: FaultySuite,
    progress: Progress,
    deadline: float,
    killed: list[str],
    failures: list[str],
) -> None:
    rng = random.Random(7)
    try:
        for victim in VICTIMS:
            if not _load_moved_on(progress, deadline):
                failures.append(f"the load stopped before the kill of the {victim}")
                return
            service = suite.services[victim]
            service.kill()
            killed.append(victim)
            time.sleep(rng.uniform(*DOWN_FOR_S))
            service.start()
    except BaseException as error:
        failures.append(f"the chaos thread failed: {error!r}")
        progress.aborted.set()
    finally:
        progress.chaos_done.set()


def _load_moved_on(progress: Progress, deadline: float) -> bool:
    with progress.lock:
        target = progress.steps_answered + STEPS_BETWEEN_KILLS
    while time.monotonic() < deadline and not progress.aborted.is_set():
        with progress.lock:
            if progress.steps_answered >= target:
                return True
        time.sleep(0.02)
    return False


def test_no_acknowledged_write_is_lost_or_doubled_when_each_service_is_killed(
    faulty_suite: FaultySuite,
) -> None:
    suite = faulty_suite
    put_policy(suite.waiver.address)
    grant_flow_consents(suite.ledger.address, CLIENTS)
    progress = Progress()
    deadline = time.monotonic() + LOAD_DEADLINE_S
    flows_by_client: dict[int, list[Flow]] = {number: [] for number in range(CLIENTS)}
    killed: list[str] = []
    failures: list[str] = []
    clients = [
        threading.Thread(
            target=run_client,
            args=(number, suite.waiver.address, progress, deadline, flows_by_client[number]),
            name=f"client-{number}",
        )
        for number in range(CLIENTS)
    ]
    chaos = threading.Thread(
        target=_chaos, args=(suite, progress, deadline, killed, failures), name="chaos"
    )
    for thread in (*clients, chaos):
        thread.start()
    for thread in (chaos, *clients):
        thread.join(LOAD_DEADLINE_S + 60)
    assert not any(thread.is_alive() for thread in (*clients, chaos)), "a thread never finished"

    logs = "\n".join(f"--- {name}\n{service.log()}" for name, service in suite.services.items())
    assert not failures, f"{failures}\n{logs}"
    flows = [flow for client_flows in flows_by_client.values() for flow in client_flows]
    unfinished = {flow.out_order_no: flow.problem for flow in flows if flow.problem}
    assert not unfinished, f"flows that did not finish: {unfinished}\n{logs}"
    assert killed == list(VICTIMS)
    assert progress.retries, "no call was cut by a kill"

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
        f" {progress.steps_answered} steps answered; kills {killed};"
        f" retries {dict(progress.retries)}; {summary}"
    )
