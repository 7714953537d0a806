"""The waiver killed with SIGKILL at every step boundary of its saga with the ledger, under load,
and restarted on the same database: every order and the ledger agree exactly once across the two
services. On SQLite and on PostgreSQL (both the ledger's and the waiver's database).

The ledger and the score service run as real processes; the waiver runs as a real process whose
ledger address is a fault-injecting proxy (ledger_fault_proxy.py) in this test's process. Client
threads run order flows against the waiver, each step with its own request id, retried with the
same request id on UNAVAILABLE (the waiver down, or the call cut), on DEADLINE_EXCEEDED (no
answer, the same thing seen from the client), and on ABORTED with reason ORDER_BUSY, with backoff
and a bounded number of attempts:

  pay once     create -> complete (a charge) -> pay all of it             -> DONE
  pay twice    create -> complete (a charge) -> pay half -> pay the rest  -> DONE
  nothing due  create -> complete (total 0)                               -> DONE
  cancel       create -> cancel                                           -> REVOKED

New users keep arriving (so the waiver keeps setting capacities), some orders of every client are
for one user all clients share (so holds race for the user's capacity), and some merchants come
back late: after a failed CreateOrder they retry only once the waiver has begun to undo
creations nobody confirmed. A chaos thread kills the waiver, once per ledger method the waiver
calls and per boundary, from the proxy:

  (a) on receiving the call, before forwarding it: the change is pending, the ledger never saw it;
  (b) after the ledger answered, before passing the answer back: the ledger applied the step and
      the waiver never learned it;

then the undo of a creation: (b) on the PlaceHold of a late merchant's order, and (b) again on
the ReleaseHold of that very hold, which only the recovery pass's undo sends (the merchant never
heard of the hold), after which the late merchants retry while the waiver restarts; and (c) a
few times at a random moment from a timer, which also catches a step settled whose answer never
left. After each kill it starts the waiver again with the same environment and waits for the
load to move on. The waiver runs with a short step lease, a short undo time for unconfirmed
creations and a frequent recovery pass, so that those act within the test.

Then, once no order is pending (the only thing read from the waiver's database), through the two
contracts alone: every flow's order is in the state its last answer gave; every hold in the
ledger belongs to exactly one order (its reference names it); an order keeps at most one hold,
and every other hold of its reference (the undone creations') was released unused; the hold it
keeps has the waived amount; the captured amount, the obligation's amount due and the credit
charge are equal, the obligation's amount paid is the order's paid amount, a DONE order's
obligation is closed on time or late; a REVOKED order's hold is released; every obligation is
one of an order's; no user has anything held or outstanding, and the outcome counts are those
of the orders; every chain verifies.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from sesame.ledger.v1 import ledger_service_pb2 as ledger_pb, ledger_service_pb2_grpc
from sesame.waiver.v1 import waiver_service_pb2_grpc

from tests.e2e.waiver_resilience.ledger_fault_proxy import Boundary, Fault, LedgerFaultProxy
from tests.support.order_flows import (
    LATE_PREFIX,
    MERCHANT,
    Flow,
    Progress,
    check,
    client as run_client,
    grant_flow_consents,
    put_policy,
    released_unused,
    wait_until_nothing_is_pending,
)

pytestmark = pytest.mark.slow

CLIENTS = 4
# Every ledger method the waiver calls while it creates, completes, cancels and pays orders.
LEDGER_METHODS = (
    "SetWaiverCapacity",
    "PlaceHold",
    "CaptureHold",
    "ReleaseHold",
    "RecordPayment",
    "CloseObligation",
)
RANDOM_KILLS = 4
RANDOM_KILL_WINDOW_S = 1.5
# The load moves on this many answered steps between two kills.
STEPS_BETWEEN_KILLS = 4
ARMED_FAULT_WAIT_S = 60.0
LOAD_DEADLINE_S = 420.0
WAIVER_SETTINGS = {
    "step_lease_s": "2",
    "create_undo_after_s": "4",
    "recovery_interval_s": "0.5",
    "seed_policies_file": "",
}


# ----------------------------------------------------------------------------------------------
# The kills


class Target:
    """Which call of the method a kill waits for."""

    ANY = ""
    LATE_ORDER = "of a late merchant's order"
    PREVIOUS_HOLD = "of the hold the previous kill placed"


@dataclass(frozen=True)
class Kill:
    method: str  # "" for a kill by the timer
    boundary: Boundary | None
    target: str = Target.ANY

    def __str__(self) -> str:
        if self.boundary is None:
            return "at a random moment"
        return " ".join(filter(None, (self.method, self.target, self.boundary.value)))


def _kill_plan(rng: random.Random) -> list[Kill]:
    plan = [Kill(method, boundary) for method in LEDGER_METHODS for boundary in Boundary]
    plan += [Kill("", None)] * RANDOM_KILLS
    rng.shuffle(plan)
    # The undo of a creation, its two kills in a row: the hold is placed and the waiver dies
    # before it learns of it, then the recovery pass undoes the creation and the waiver dies as
    # the ledger answers the release.
    undo = rng.randrange(len(plan) + 1)
    plan[undo:undo] = [
        Kill("PlaceHold", Boundary.AFTER_ANSWER, Target.LATE_ORDER),
        Kill("ReleaseHold", Boundary.AFTER_ANSWER, Target.PREVIOUS_HOLD),
    ]
    return plan


def _matching(kill: Kill, previous: Fault | None) -> Callable[[Any], bool] | None:
    if kill.target == Target.LATE_ORDER:
        return lambda request: request.reference.startswith(f"{MERCHANT}/{LATE_PREFIX}")
    if kill.target == Target.PREVIOUS_HOLD:
        assert previous is not None and previous.answer is not None
        hold_id = previous.answer.hold.hold_id
        return lambda request: request.hold_id == hold_id
    return None


def _chaos(
    plan: list[Kill],
    waiver: Any,
    proxy: LedgerFaultProxy,
    progress: Progress,
    deadline: float,
    done: list[tuple[Kill, Fault | None]],
    failures: list[str],
) -> None:
    rng = random.Random(len(plan))
    armed_ahead: Fault | None = None
    try:
        for index, kill in enumerate(plan):
            if armed_ahead is None and not _load_moved_on(progress, deadline):
                failures.append(f"the load stopped before the kill {kill}")
                return
            fault: Fault | None = None
            if kill.boundary is None:
                time.sleep(rng.uniform(0, RANDOM_KILL_WINDOW_S))
                waiver.kill()
            else:
                fault = armed_ahead or proxy.arm(kill.method, kill.boundary, _matching(kill, None))
                if not fault.fired.wait(ARMED_FAULT_WAIT_S):
                    proxy.disarm()
                    failures.append(f"no call for the kill {kill} within {ARMED_FAULT_WAIT_S} s")
                    return
            done.append((kill, fault))
            if kill.target == Target.PREVIOUS_HOLD:
                progress.undo_cut.set()
            armed_ahead = None
            following = plan[index + 1] if index + 1 < len(plan) else None
            if following is not None and following.target == Target.PREVIOUS_HOLD:
                # Armed before the restart: the first recovery pass may undo the creation at once.
                assert following.boundary is not None
                armed_ahead = proxy.arm(
                    following.method, following.boundary, _matching(following, fault)
                )
            _restart(waiver, armed_ahead)
    except BaseException as error:  # a failed restart ends the load at once
        failures.append(f"the chaos thread failed: {error!r}")
        progress.aborted.set()
    finally:
        progress.chaos_done.set()


def _restart(waiver: Any, armed_ahead: Fault | None) -> None:
    """Starts the waiver again. The recovery pass starts before the server does, so a fault
    armed ahead may kill the waiver while it starts: that is the next kill, already done."""
    try:
        waiver.start()
    except RuntimeError:
        if armed_ahead is None or not armed_ahead.fired.wait(ARMED_FAULT_WAIT_S):
            raise


def _load_moved_on(progress: Progress, deadline: float) -> bool:
    with progress.lock:
        target = progress.steps_answered + STEPS_BETWEEN_KILLS
    while time.monotonic() < deadline and not progress.aborted.is_set():
        with progress.lock:
            if progress.steps_answered >= target:
                return True
        time.sleep(0.02)
    return False


# ----------------------------------------------------------------------------------------------
# The test


@dataclass(frozen=True)
class Suite:
    waiver: Any  # conftest.ServiceProcess
    proxy: LedgerFaultProxy
    ledger_address: str
    waiver_database_url: str


@pytest.fixture
def suite(
    database_urls: Callable[[str], str], start_service: Callable[..., Any]
) -> Iterator[Suite]:
    """The ledger and the score service, the proxy in front of the ledger, and the waiver
    behind the proxy."""
    ledger = start_service("ledger", database_url=database_urls("ledger"), grace_period_s="1")
    score = start_service("score", ledger_address=ledger.address, workers="1")
    proxy = LedgerFaultProxy(ledger.address)
    proxy.start()
    waiver_database_url = database_urls("waiver")
    try:
        waiver = start_service(
            "waiver",
            database_url=waiver_database_url,
            ledger_address=proxy.address,
            score_address=score.address,
            **WAIVER_SETTINGS,
        )
        proxy.on_fault = waiver.kill
        yield Suite(waiver, proxy, ledger.address, waiver_database_url)
    finally:
        proxy.stop()


def test_every_order_and_the_ledger_agree_exactly_once_across_waiver_crashes(
    suite: Suite,
) -> None:
    waiver, proxy = suite.waiver, suite.proxy
    put_policy(waiver.address)
    grant_flow_consents(suite.ledger_address, CLIENTS)
    progress = Progress()
    deadline = time.monotonic() + LOAD_DEADLINE_S
    flows_by_client: dict[int, list[Flow]] = {client: [] for client in range(CLIENTS)}
    plan = _kill_plan(random.Random(CLIENTS))
    kills: list[tuple[Kill, Fault | None]] = []
    failures: list[str] = []
    started_s = time.monotonic()

    clients = [
        threading.Thread(
            target=run_client,
            args=(client, waiver.address, progress, deadline, flows_by_client[client]),
            name=f"client-{client}",
        )
        for client in range(CLIENTS)
    ]
    chaos = threading.Thread(
        target=_chaos,
        args=(plan, waiver, proxy, progress, deadline, kills, failures),
        name="chaos",
    )
    for thread in (*clients, chaos):
        thread.start()
    chaos.join(LOAD_DEADLINE_S + 60)
    for client in clients:
        client.join(LOAD_DEADLINE_S + 60)
    assert not any(thread.is_alive() for thread in (*clients, chaos)), "a thread never finished"
    load_s = time.monotonic() - started_s

    flows = [flow for client_flows in flows_by_client.values() for flow in client_flows]
    assert not failures, f"{failures}\n{waiver.log()}"
    unfinished = {flow.out_order_no: flow.problem for flow in flows if flow.problem}
    assert not unfinished, f"flows that did not finish: {unfinished}\n{waiver.log()}"
    assert [kill for kill, _ in kills] == plan, "every planned kill happened, in order"
    assert progress.retries, "no call was cut by a kill"

    wait_until_nothing_is_pending(suite.waiver_database_url)
    with (
        grpc.insecure_channel(waiver.address) as waiver_channel,
        grpc.insecure_channel(suite.ledger_address) as ledger_channel,
    ):
        waiver_stub = waiver_service_pb2_grpc.WaiverServiceStub(waiver_channel)
        ledger_stub = ledger_service_pb2_grpc.LedgerServiceStub(ledger_channel)
        summary = check(waiver_stub, ledger_stub, flows)
        _check_the_undo(ledger_stub, kills)
    fired_on = [
        f"{kill} ({fault.request.request_id if fault and fault.request else ''})"
        for kill, fault in kills
    ]
    print(
        f"\n{len(flows)} flows ({dict(Counter(flow.kind for flow in flows))},"
        f" {sum(flow.late for flow in flows)} of late merchants),"
        f" {progress.steps_answered} steps answered in {load_s:.0f} s;"
        f" {len(kills)} kills: {fired_on};"
        f" retries {dict(progress.retries)}; ledger calls through the proxy {dict(proxy.calls)};"
        f" {summary}"
    )


def _check_the_undo(ledger_stub: Any, kills: list[tuple[Kill, Fault | None]]) -> None:
    """The hold of the undone creation stayed released unused (its order, created anew, keeps
    another hold: see check)."""
    (fault,) = [fault for kill, fault in kills if kill.target == Target.PREVIOUS_HOLD]
    assert fault is not None and fault.request is not None
    hold = ledger_stub.GetHold(
        ledger_pb.GetHoldRequest(hold_id=fault.request.hold_id), timeout=30
    ).hold
    assert released_unused(hold), hold
