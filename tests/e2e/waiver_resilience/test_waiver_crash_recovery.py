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
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import sqlalchemy
from google.protobuf import duration_pb2, timestamp_pb2
from sesame.ledger.v1 import ledger_service_pb2 as ledger_pb, ledger_service_pb2_grpc
from sesame.type.v1 import money_pb2, time_range_pb2
from sesame.waiver.v1 import waiver_service_pb2 as pb, waiver_service_pb2_grpc

from services.common.grpc_errors import error_details
from tests.e2e.waiver_resilience.ledger_fault_proxy import Boundary, Fault, LedgerFaultProxy

pytestmark = pytest.mark.slow

CURRENCY = "CNY"
UNIT = 100  # minor units per yuan
MERCHANT = "crash-merchant"
SCENARIO = "bike"
SHARED_USER = "crash-shared"
CLIENTS = 4
# Each client runs at least this many flows, and goes on until the last kill is behind it.
FLOWS_MIN = 8
FLOWS_MAX = 200
FLOW_KINDS = ("pay once", "cancel", "pay twice", "nothing due", "pay once")
# Every ledger method the waiver calls while it creates, completes, cancels and pays orders.
LEDGER_METHODS = (
    "SetWaiverCapacity",
    "PlaceHold",
    "CaptureHold",
    "ReleaseHold",
    "RecordPayment",
    "CloseObligation",
)
# Every fifth order's merchant comes back late after a failed CreateOrder: after the waiver began
# to undo the creation nobody confirmed (create_undo_after_s below), so that the undo runs.
LATE_EVERY = 5
LATE_RETRY_AFTER_S = 12.0
LATE_PREFIX = "late-"
RANDOM_KILLS = 4
RANDOM_KILL_WINDOW_S = 1.5
# The load moves on this many answered steps between two kills.
STEPS_BETWEEN_KILLS = 4
ARMED_FAULT_WAIT_S = 60.0
LOAD_DEADLINE_S = 420.0
RECOVERY_WAIT_S = 60.0
CALL_TIMEOUT_S = 15.0
ATTEMPTS_MAX = 300
BACKOFF_MAX_S = 0.4
WAIVER_SETTINGS = {
    "step_lease_s": "2",
    "create_undo_after_s": "4",
    "recovery_interval_s": "0.5",
    "seed_policies_file": "",
}
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
)


def money(amount_minor: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code=CURRENCY, amount_minor=amount_minor)


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    """A moment to the microsecond (the waiver keeps microseconds), fixed once per request so
    that every retry sends the same bytes."""
    microseconds = round(seconds * 1_000_000)
    return timestamp_pb2.Timestamp(
        seconds=microseconds // 1_000_000, nanos=microseconds % 1_000_000 * 1000
    )


def days(count: float) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=round(count * 86_400))


# ----------------------------------------------------------------------------------------------
# The load


class GaveUp(Exception):
    """A step was still unanswered after ATTEMPTS_MAX attempts."""


@dataclass
class Progress:
    steps_answered: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    chaos_done: threading.Event = field(default_factory=threading.Event)
    # Set once the undo of a creation was cut short by a kill: late merchants retry at once.
    undo_cut: threading.Event = field(default_factory=threading.Event)
    aborted: threading.Event = field(default_factory=threading.Event)

    def answered(self, retried: list[str]) -> None:
        with self.lock:
            self.steps_answered += 1
            self.retries.update(retried)


@dataclass
class Flow:
    client: int
    number: int
    kind: str
    user_id: str
    out_order_no: str
    risk_minor: int
    late: bool
    answers: list[pb.Order] = field(default_factory=list)
    problem: str = ""

    @property
    def last(self) -> pb.Order | None:
        return self.answers[-1] if self.answers else None


def _retried_as(error: grpc.RpcError) -> str | None:
    """What a retry is counted as, or None when the contract says not to retry."""
    code = error.code()  # type: ignore[attr-defined]
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return code.name
    if code == grpc.StatusCode.ABORTED and error_details(error).reason == "ORDER_BUSY":
        return "ORDER_BUSY"
    return None


def _until_answered(
    method: Callable[..., Any], request: Any, progress: Progress, *, late: bool = False
) -> Any:
    """The answer to `request`, retried with the same request (and so the same request_id) on
    what the contract says to retry; any other error is raised. A `late` caller, after every
    answer that leaves it unsure whether the call took effect (not after ORDER_BUSY), waits until
    a kill has cut the undo of a creation short (then it comes back while the waiver restarts),
    or LATE_RETRY_AFTER_S."""
    retried: list[str] = []
    for attempt in range(ATTEMPTS_MAX):
        try:
            response = method(request, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as error:
            kind = _retried_as(error)
            if kind is None or progress.aborted.is_set():
                raise
            retried.append(kind)
            if late and kind != "ORDER_BUSY":
                progress.undo_cut.wait(LATE_RETRY_AFTER_S)
            time.sleep(min(BACKOFF_MAX_S, 0.02 * 2**attempt) * random.uniform(0.5, 1.0))
            continue
        progress.answered(retried)
        return response
    raise GaveUp(f"{type(request).__name__} {request.request_id}: {Counter(retried)}")


def _flow_plan(client: int, number: int, rng: random.Random) -> Flow:
    # A new user every second flow (a first order sets the user's capacity); every fourth order
    # is for the user all clients share.
    user_id = SHARED_USER if number % 4 == 3 else f"crash-user-{client}-{number // 2}"
    late = number % LATE_EVERY == LATE_EVERY - 1
    return Flow(
        client,
        number,
        FLOW_KINDS[(client + number) % len(FLOW_KINDS)],
        user_id,
        f"{LATE_PREFIX if late else ''}order-{client}-{number}",
        rng.randint(10, 99) * UNIT,
        late,
    )


def _run_flow(stub: Any, flow: Flow, rng: random.Random, progress: Progress) -> None:
    key = {"merchant_id": MERCHANT, "out_order_no": flow.out_order_no}
    now_s = time.time()
    create = pb.CreateOrderRequest(
        request_id=f"{flow.out_order_no}-create",
        user_id=flow.user_id,
        scenario_id=SCENARIO,
        risk_fund_type=pb.RISK_FUND_TYPE_DEPOSIT,
        risk_amount=money(flow.risk_minor),
        time_range=time_range_pb2.TimeRange(
            start_time=timestamp(now_s - 60), end_time=timestamp(now_s + 3600)
        ),
        **key,
    )
    order = _until_answered(stub.CreateOrder, create, progress, late=flow.late).order
    flow.answers.append(order)
    if order.state == pb.ORDER_STATE_DENIED:
        return
    if order.state != pb.ORDER_STATE_DOING:
        flow.problem = f"created as {pb.OrderState.Name(order.state)}"
        return
    if flow.kind == "cancel":
        cancel = pb.CancelOrderRequest(
            request_id=f"{flow.out_order_no}-cancel", reason="not needed", **key
        )
        flow.answers.append(_until_answered(stub.CancelOrder, cancel, progress).order)
        return
    waived_minor = order.decision.waived_amount.amount_minor
    total_minor = 0 if flow.kind == "nothing due" else rng.randint(1, waived_minor // UNIT) * UNIT
    complete = pb.CompleteOrderRequest(
        request_id=f"{flow.out_order_no}-complete",
        total_amount=money(total_minor),
        end_time=timestamp(time.time()),
        **key,
    )
    order = _until_answered(stub.CompleteOrder, complete, progress).order
    flow.answers.append(order)
    due_minor = order.credit_charge_amount.amount_minor
    half_minor = due_minor // 2 if flow.kind == "pay twice" else 0
    payments = [half_minor, due_minor - half_minor]
    for number, amount_minor in enumerate(filter(None, payments), start=1):
        payment = pb.SyncPaymentRequest(
            request_id=f"{flow.out_order_no}-pay-{number}",
            amount=money(amount_minor),
            paid_time=timestamp(time.time()),
            **key,
        )
        flow.answers.append(_until_answered(stub.SyncPayment, payment, progress).order)


def _client(
    client: int, address: str, progress: Progress, deadline: float, flows: list[Flow]
) -> None:
    rng = random.Random(client)
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = waiver_service_pb2_grpc.WaiverServiceStub(channel)
        for number in range(FLOWS_MAX):
            if progress.aborted.is_set() or time.monotonic() > deadline:
                return
            if number >= FLOWS_MIN and progress.chaos_done.is_set():
                return
            flow = _flow_plan(client, number, rng)
            flows.append(flow)
            try:
                _run_flow(stub, flow, rng, progress)
            except (grpc.RpcError, GaveUp) as error:
                flow.problem = _describe(error)
                return


def _describe(error: Exception) -> str:
    if isinstance(error, grpc.RpcError):
        code = error.code()  # type: ignore[attr-defined]
        return f"{code.name} {error_details(error).reason}"
    return str(error)


def _expected_state(flow: Flow) -> int:
    first = flow.answers[0]
    if first.state == pb.ORDER_STATE_DENIED:
        return pb.ORDER_STATE_DENIED
    return pb.ORDER_STATE_REVOKED if flow.kind == "cancel" else pb.ORDER_STATE_DONE


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
    _put_policy(waiver.address)
    progress = Progress()
    deadline = time.monotonic() + LOAD_DEADLINE_S
    flows_by_client: dict[int, list[Flow]] = {client: [] for client in range(CLIENTS)}
    plan = _kill_plan(random.Random(CLIENTS))
    kills: list[tuple[Kill, Fault | None]] = []
    failures: list[str] = []
    started_s = time.monotonic()

    clients = [
        threading.Thread(
            target=_client,
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

    _wait_until_nothing_is_pending(suite.waiver_database_url)
    with (
        grpc.insecure_channel(waiver.address) as waiver_channel,
        grpc.insecure_channel(suite.ledger_address) as ledger_channel,
    ):
        waiver_stub = waiver_service_pb2_grpc.WaiverServiceStub(waiver_channel)
        ledger_stub = ledger_service_pb2_grpc.LedgerServiceStub(ledger_channel)
        summary = _check(waiver_stub, ledger_stub, flows)
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


def _put_policy(address: str) -> None:
    policy = pb.ScenarioPolicy(
        merchant_id=MERCHANT,
        scenario_id=SCENARIO,
        minimum_score=400,
        max_waiver_amount=money(300 * UNIT),
        expected_loss_budget=money(30 * UNIT),
        max_service_duration=days(1),
        grace_period=days(1 / 48),
        breach_period=days(2),
        payment_window=days(1),
        thin_file_treatment=pb.THIN_FILE_TREATMENT_STARTER_WAIVER,
        thin_file_max_waiver_amount=money(99 * UNIT),
        scoring_unavailable_action=pb.SCORING_UNAVAILABLE_ACTION_REFUSE_ORDER,
    )
    with grpc.insecure_channel(address) as channel:
        waiver_service_pb2_grpc.WaiverServiceStub(channel).PutScenarioPolicy(
            pb.PutScenarioPolicyRequest(request_id="crash-policy", policy=policy), timeout=10
        )


def _wait_until_nothing_is_pending(database_url: str) -> None:
    """Polls the waiver's database until no order has a change in flight: the recovery pass has
    finished (or undone) everything the kills left half done. Only for waiting: what the orders
    are is read through the contract."""
    engine = sqlalchemy.create_engine(database_url)
    query = sqlalchemy.text("SELECT count(*) FROM waiver_order WHERE pending_json IS NOT NULL")
    deadline = time.monotonic() + RECOVERY_WAIT_S
    try:
        while True:
            with engine.connect() as connection:
                pending = connection.execute(query).scalar_one()
            if pending == 0:
                return
            assert time.monotonic() < deadline, f"{pending} orders still pending"
            time.sleep(0.2)
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------------------------
# Reading both services back and checking that they agree


def _list_orders(stub: Any) -> list[pb.Order]:
    orders: list[pb.Order] = []
    token = ""
    for _ in range(1000):
        page = stub.ListOrders(
            pb.ListOrdersRequest(merchant_id=MERCHANT, page_size=1000, page_token=token),
            timeout=30,
        )
        orders.extend(page.orders)
        token = page.next_page_token
        if not token:
            return orders
    raise AssertionError("ListOrders never ended")


def _journal(stub: Any) -> list[ledger_pb.Entry]:
    entries: list[ledger_pb.Entry] = []
    token = ""
    for _ in range(10_000):
        page = stub.ListEntries(
            ledger_pb.ListEntriesRequest(page_size=1000, page_token=token), timeout=30
        )
        entries.extend(page.entries)
        token = page.next_page_token
        if not token:
            return entries
    raise AssertionError("ListEntries never ended")


def _check(waiver_stub: Any, ledger_stub: Any, flows: list[Flow]) -> str:
    orders = _list_orders(waiver_stub)
    by_reference = {f"{order.merchant_id}/{order.out_order_no}": order for order in orders}
    assert len(by_reference) == len(orders), "an order listed twice"

    # Every flow's order is what its last answer said, in the state its flow leads to.
    for flow in flows:
        order = by_reference.get(f"{MERCHANT}/{flow.out_order_no}")
        assert order is not None, f"{flow.out_order_no} was answered but is not listed"
        assert order == flow.last, f"{flow.out_order_no} changed after its last answer"
        assert order.state == _expected_state(flow), (
            f"{flow.out_order_no} ({flow.kind}) is {pb.OrderState.Name(order.state)}"
        )
    assert len(orders) == len(flows), "orders no flow created"

    entries = _journal(ledger_stub)
    holds = [
        ledger_stub.GetHold(
            ledger_pb.GetHoldRequest(hold_id=entry.hold_placed.hold_id), timeout=30
        ).hold
        for entry in entries
        if entry.type == ledger_pb.ENTRY_TYPE_HOLD_PLACED
    ]
    holds_by_reference: dict[str, list[ledger_pb.Hold]] = defaultdict(list)
    for hold in holds:
        holds_by_reference[hold.reference].append(hold)

    # No orphan: every hold, open or resolved, belongs to exactly one order.
    orphans = [hold.hold_id for hold in holds if hold.reference not in by_reference]
    assert not orphans, f"holds of no order: {orphans}"

    obligations_kept: set[str] = set()
    abandoned = 0
    for reference, order in by_reference.items():
        kept, unused = _kept_and_unused(holds_by_reference[reference], order)
        abandoned += len(unused)
        obligation_id = _check_order_against_its_hold(ledger_stub, reference, order, kept)
        if obligation_id:
            obligations_kept.add(obligation_id)

    # Every obligation the ledger has is the one of an order's kept hold.
    created = {
        entry.obligation_created.obligation_id
        for entry in entries
        if entry.type == ledger_pb.ENTRY_TYPE_OBLIGATION_CREATED
    }
    assert created == obligations_kept, "obligations of no order, or orders without theirs"

    _check_accounts(ledger_stub, orders)
    report = ledger_stub.VerifyChain(ledger_pb.VerifyChainRequest(), timeout=60)
    assert report.intact, report.first_mismatch
    states = Counter(pb.OrderState.Name(order.state) for order in orders)
    return f"orders {dict(states)}; {len(holds)} holds, {abandoned} released unused"


def _check_the_undo(ledger_stub: Any, kills: list[tuple[Kill, Fault | None]]) -> None:
    """The hold of the undone creation stayed released unused (its order, created anew, keeps
    another hold: see _check)."""
    (fault,) = [fault for kill, fault in kills if kill.target == Target.PREVIOUS_HOLD]
    assert fault is not None and fault.request is not None
    hold = ledger_stub.GetHold(
        ledger_pb.GetHoldRequest(hold_id=fault.request.hold_id), timeout=30
    ).hold
    assert _released_unused(hold), hold


def _released_unused(hold: ledger_pb.Hold) -> bool:
    return hold.state == ledger_pb.HOLD_STATE_RELEASED and not hold.fulfilled


def _kept_and_unused(
    holds: list[ledger_pb.Hold], order: pb.Order
) -> tuple[ledger_pb.Hold | None, list[ledger_pb.Hold]]:
    """The one hold the order keeps, and the holds of its undone creations (released unused).

    A REVOKED order's kept hold is released unused too: it is the one with the waived amount
    (any of them, if an undone creation held the same amount: they cannot be told apart, and
    either way none is open or captured)."""
    name = f"{order.merchant_id}/{order.out_order_no}"
    not_released = [hold for hold in holds if not _released_unused(hold)]
    assert len(not_released) <= 1, f"{name} has a double hold: {not_released}"
    if order.state == pb.ORDER_STATE_DENIED:
        assert not not_released, f"{name} is DENIED but holds {not_released}"
        return None, holds
    if order.state == pb.ORDER_STATE_REVOKED:
        assert not not_released, f"{name} is REVOKED but its hold is {not_released}"
        waived_minor = order.decision.waived_amount.amount_minor
        matching = [hold for hold in holds if hold.amount.amount_minor == waived_minor]
        assert matching, f"{name} is REVOKED and no released hold has its waived amount"
        kept = matching[-1]
        return kept, [hold for hold in holds if hold is not kept]
    assert len(not_released) == 1, f"{name} ({pb.OrderState.Name(order.state)}) holds nothing"
    kept = not_released[0]
    return kept, [hold for hold in holds if hold is not kept]


def _check_order_against_its_hold(
    ledger_stub: Any, reference: str, order: pb.Order, hold: ledger_pb.Hold | None
) -> str:
    """Checks the order's amounts against its hold and obligation; the obligation's id, if any."""
    if hold is None:
        return ""
    state = order.state
    waived_minor = order.decision.waived_amount.amount_minor
    assert hold.amount.amount_minor == waived_minor, f"{reference}: waived != held"
    charge_minor = order.credit_charge_amount.amount_minor
    if state in (pb.ORDER_STATE_CREATED, pb.ORDER_STATE_DOING):
        assert hold.state == ledger_pb.HOLD_STATE_OPEN, f"{reference}: {hold}"
        return ""
    if state == pb.ORDER_STATE_REVOKED:
        assert _released_unused(hold), f"{reference}: REVOKED with {hold}"
        return ""
    if state == pb.ORDER_STATE_DONE and charge_minor == 0:
        assert hold.state == ledger_pb.HOLD_STATE_RELEASED and hold.fulfilled, (
            f"{reference}: DONE with nothing to pay, and the hold is {hold}"
        )
        return ""
    assert hold.state == ledger_pb.HOLD_STATE_CAPTURED, f"{reference}: {hold}"
    assert hold.captured_amount.amount_minor == charge_minor, f"{reference}: charge != captured"
    obligation = ledger_stub.GetObligation(
        ledger_pb.GetObligationRequest(obligation_id=hold.obligation_id), timeout=30
    ).obligation
    assert obligation.reference == reference
    assert obligation.amount_due.amount_minor == charge_minor, f"{reference}: charge != due"
    assert obligation.amount_paid.amount_minor == order.paid_amount.amount_minor, (
        f"{reference}: paid {order.paid_amount.amount_minor} != {obligation.amount_paid}"
    )
    if state == pb.ORDER_STATE_DONE:
        assert obligation.state == ledger_pb.OBLIGATION_STATE_CLOSED, f"{reference}: {obligation}"
        assert obligation.outcome in (
            ledger_pb.OBLIGATION_OUTCOME_ON_TIME,
            ledger_pb.OBLIGATION_OUTCOME_LATE,
        ), f"{reference}: {obligation}"
    return hold.obligation_id


def _check_accounts(ledger_stub: Any, orders: list[pb.Order]) -> None:
    """Per user: what is held and outstanding is what the user's orders hold and owe, and the
    outcome counts are those of the orders."""
    by_user: dict[str, list[pb.Order]] = defaultdict(list)
    for order in orders:
        by_user[order.user_id].append(order)
    for user_id, mine in by_user.items():
        account = ledger_stub.GetAccountSummary(
            ledger_pb.GetAccountSummaryRequest(user_id=user_id), timeout=30
        ).account
        running = [o for o in mine if o.state in (pb.ORDER_STATE_CREATED, pb.ORDER_STATE_DOING)]
        owing = [
            o for o in mine if o.state in (pb.ORDER_STATE_AWAITING_PAYMENT, pb.ORDER_STATE_OVERDUE)
        ]
        done = [o for o in mine if o.state == pb.ORDER_STATE_DONE]
        assert account.held.amount_minor == sum(
            o.decision.waived_amount.amount_minor for o in running
        ), user_id
        assert account.open_hold_count == len(running), user_id
        assert account.outstanding.amount_minor == sum(
            o.credit_charge_amount.amount_minor - o.paid_amount.amount_minor for o in owing
        ), user_id
        paid = [o for o in done if o.credit_charge_amount.amount_minor > 0]
        outcomes = account.outcomes
        assert outcomes.on_time + outcomes.late_up_to_30_days == len(paid), user_id
        assert outcomes.defaulted == 0, user_id
        assert outcomes.fulfilled == len(done) - len(paid), user_id
