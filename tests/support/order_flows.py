"""Order flows through the waiver under faults, and the check that the waiver and the ledger
agree on them exactly once afterwards: for the tests that kill services or cut their
connections (tests/e2e/waiver_resilience, tests/e2e/faults).

Client threads (`client`) run flows against the waiver, each step with its own request id,
retried with the same request id on UNAVAILABLE (the waiver down, or the call cut), on
DEADLINE_EXCEEDED (no answer, the same thing seen from the client), and on ABORTED with reason
ORDER_BUSY, with backoff and a bounded number of attempts:

  pay once     create -> complete (a charge) -> pay all of it             -> DONE
  pay twice    create -> complete (a charge) -> pay half -> pay the rest  -> DONE
  nothing due  create -> complete (total 0)                               -> DONE
  cancel       create -> cancel                                           -> REVOKED

New users keep arriving (so the waiver keeps setting capacities), some orders of every client are
for one user all clients share (so holds race for the user's capacity), and some merchants come
back late: after a failed CreateOrder they retry only once the waiver has begun to undo
creations nobody confirmed (or once `Progress.undo_cut` is set).

`check`, once no order is pending (`wait_until_nothing_is_pending`, the only thing read from the
waiver's database), reads both services through their contracts alone: every flow's order is in
the state its last answer gave; every hold in the ledger belongs to exactly one order (its
reference names it); an order keeps at most one hold, and every other hold of its reference (the
undone creations') was released unused; the hold it keeps has the waived amount; the captured
amount, the obligation's amount due and the credit charge are equal, the obligation's amount paid
is the order's paid amount, a DONE order's obligation is closed on time or late; a REVOKED
order's hold is released; every obligation is one of an order's; no user has anything held or
outstanding, and the outcome counts are those of the orders; every chain verifies.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import sqlalchemy
from google.protobuf import duration_pb2, timestamp_pb2
from sesame.ledger.v1 import ledger_service_pb2 as ledger_pb
from sesame.type.v1 import money_pb2, time_range_pb2
from sesame.waiver.v1 import waiver_service_pb2 as pb, waiver_service_pb2_grpc

from services.common.grpc_errors import error_details
from services.datasets.consent import grant_consent

CURRENCY = "CNY"
UNIT = 100  # minor units per yuan
MERCHANT = "crash-merchant"
SCENARIO = "bike"
SHARED_USER = "crash-shared"
# Each client runs at least this many flows, and goes on until the last kill is behind it.
FLOWS_MIN = 8
FLOWS_MAX = 200
FLOW_KINDS = ("pay once", "cancel", "pay twice", "nothing due", "pay once")
# Every fifth order's merchant comes back late after a failed CreateOrder: after the waiver began
# to undo the creation nobody confirmed (create_undo_after_s below), so that the undo runs.
LATE_EVERY = 5
LATE_RETRY_AFTER_S = 12.0
LATE_PREFIX = "late-"
RECOVERY_WAIT_S = 60.0
CALL_TIMEOUT_S = 15.0
ATTEMPTS_MAX = 300
BACKOFF_MAX_S = 0.4
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


def retried_as(error: grpc.RpcError) -> str | None:
    """What a retry is counted as, or None when the contract says not to retry."""
    code = error.code()  # type: ignore[attr-defined]
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return code.name
    if code == grpc.StatusCode.ABORTED and error_details(error).reason == "ORDER_BUSY":
        return "ORDER_BUSY"
    return None


def until_answered(
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
            kind = retried_as(error)
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


def flow_user(client: int, number: int) -> str:
    # A new user every second flow (a first order sets the user's capacity); every fourth order
    # is for the user all clients share.
    return SHARED_USER if number % 4 == 3 else f"crash-user-{client}-{number // 2}"


def grant_flow_consents(ledger_address: str, clients: int) -> None:
    """Every user the flows of `clients` clients may name consents to be scored, as a user does
    before a merchant's first order (the waiver refuses orders of users who did not). Granted
    before the load begins, so that no fault stands between a user and their consent."""
    users = sorted(
        {flow_user(client, number) for client in range(clients) for number in range(FLOWS_MAX)}
    )
    with grpc.insecure_channel(ledger_address) as channel:
        grant_consent(channel, users, request_id_prefix="crash-consent-")


def flow_plan(client: int, number: int, rng: random.Random) -> Flow:
    user_id = flow_user(client, number)
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


def run_flow(stub: Any, flow: Flow, rng: random.Random, progress: Progress) -> None:
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
    order = until_answered(stub.CreateOrder, create, progress, late=flow.late).order
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
        flow.answers.append(until_answered(stub.CancelOrder, cancel, progress).order)
        return
    waived_minor = order.decision.waived_amount.amount_minor
    total_minor = 0 if flow.kind == "nothing due" else rng.randint(1, waived_minor // UNIT) * UNIT
    complete = pb.CompleteOrderRequest(
        request_id=f"{flow.out_order_no}-complete",
        total_amount=money(total_minor),
        end_time=timestamp(time.time()),
        **key,
    )
    order = until_answered(stub.CompleteOrder, complete, progress).order
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
        flow.answers.append(until_answered(stub.SyncPayment, payment, progress).order)


def client(
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
            flow = flow_plan(client, number, rng)
            flows.append(flow)
            try:
                run_flow(stub, flow, rng, progress)
            except (grpc.RpcError, GaveUp) as error:
                flow.problem = describe(error)
                return


def describe(error: Exception) -> str:
    if isinstance(error, grpc.RpcError):
        code = error.code()  # type: ignore[attr-defined]
        return f"{code.name} {error_details(error).reason}"
    return str(error)


def expected_state(flow: Flow) -> int:
    first = flow.answers[0]
    if first.state == pb.ORDER_STATE_DENIED:
        return pb.ORDER_STATE_DENIED
    return pb.ORDER_STATE_REVOKED if flow.kind == "cancel" else pb.ORDER_STATE_DONE


def put_policy(address: str) -> None:
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


def wait_until_nothing_is_pending(database_url: str) -> None:
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


def list_orders(stub: Any) -> list[pb.Order]:
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


def journal(stub: Any) -> list[ledger_pb.Entry]:
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


def check(waiver_stub: Any, ledger_stub: Any, flows: list[Flow]) -> str:
    orders = list_orders(waiver_stub)
    by_reference = {f"{order.merchant_id}/{order.out_order_no}": order for order in orders}
    assert len(by_reference) == len(orders), "an order listed twice"

    # Every flow's order is what its last answer said, in the state its flow leads to.
    for flow in flows:
        order = by_reference.get(f"{MERCHANT}/{flow.out_order_no}")
        assert order is not None, f"{flow.out_order_no} was answered but is not listed"
        assert order == flow.last, f"{flow.out_order_no} changed after its last answer"
        assert order.state == expected_state(flow), (
            f"{flow.out_order_no} ({flow.kind}) is {pb.OrderState.Name(order.state)}"
        )
    assert len(orders) == len(flows), "orders no flow created"
    return check_agreement(ledger_stub, orders)


def check_agreement(ledger_stub: Any, orders: list[pb.Order]) -> str:
    """The ledger and the waiver's `orders` (every order of the merchant) agree: each hold is of
    exactly one order, each order keeps at most one, with its amounts; each obligation is of an
    order; the accounts hold and owe what the orders do; every chain verifies."""
    by_reference = {f"{order.merchant_id}/{order.out_order_no}": order for order in orders}
    assert len(by_reference) == len(orders), "an order listed twice"
    entries = journal(ledger_stub)
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
        kept, unused = kept_and_unused(holds_by_reference[reference], order)
        abandoned += len(unused)
        obligation_id = check_order_against_its_hold(ledger_stub, reference, order, kept)
        if obligation_id:
            obligations_kept.add(obligation_id)

    # Every obligation the ledger has is the one of an order's kept hold.
    created = {
        entry.obligation_created.obligation_id
        for entry in entries
        if entry.type == ledger_pb.ENTRY_TYPE_OBLIGATION_CREATED
    }
    assert created == obligations_kept, "obligations of no order, or orders without theirs"

    check_accounts(ledger_stub, orders)
    report = ledger_stub.VerifyChain(ledger_pb.VerifyChainRequest(), timeout=60)
    assert report.intact, report.first_mismatch
    states = Counter(pb.OrderState.Name(order.state) for order in orders)
    return f"orders {dict(states)}; {len(holds)} holds, {abandoned} released unused"


def released_unused(hold: ledger_pb.Hold) -> bool:
    return hold.state == ledger_pb.HOLD_STATE_RELEASED and not hold.fulfilled


def kept_and_unused(
    holds: list[ledger_pb.Hold], order: pb.Order
) -> tuple[ledger_pb.Hold | None, list[ledger_pb.Hold]]:
    """The one hold the order keeps, and the holds of its undone creations (released unused).

    A REVOKED order's kept hold is released unused too: it is the one with the waived amount
    (any of them, if an undone creation held the same amount: they cannot be told apart, and
    either way none is open or captured)."""
    name = f"{order.merchant_id}/{order.out_order_no}"
    not_released = [hold for hold in holds if not released_unused(hold)]
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


def check_order_against_its_hold(
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
        assert released_unused(hold), f"{reference}: REVOKED with {hold}"
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


def check_accounts(ledger_stub: Any, orders: list[pb.Order]) -> None:
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
