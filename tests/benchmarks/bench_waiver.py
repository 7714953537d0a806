"""The waiver benchmark (`make bench-waiver`): order flows through the waiver against the ledger's
own holds, on a fresh suite over PostgreSQL.

One run:

1. starts ledger, score and waiver as processes, the way `services.suite.launch` starts them, on
   free ports, each of ledger and waiver on a database of its own created on the local
   PostgreSQL server (dropped at the end, even on failure); log level WARNING;
2. prepares the users. Waiver users consent to be scored (RecordConsent, through the ledger,
   before anything else: the waiver refuses orders of users who did not) and have no ledger
   history before the run, so the score service calls them thin files; the seed bike policy
   (merchant "sesame-demo", scenario "bike") waives up to 99 CNY for a thin file, so their 99 CNY
   orders are FULL waivers. Each gets one flow before anything is measured, so that the waiver
   has set the user's capacity (from the thin-file band) in the ledger and keeps the user's
   score, and the measured flows do not pay for either. Ledger users (for the ledger's own
   holds) get a large waiver capacity set directly;
3. rounds (`--rounds`, 3 by default), each of four measurements back to back:
   * flows at most (closed loop): CreateOrder (bike, risk amount 99 CNY, time window starting
     now) then CompleteOrder with nothing to charge (the hold is released as fulfilled, so a
     flow's ledger writes are a pair's: a hold placed and released), each write with its own
     request_id and every order its own out_order_no: `flows_per_s`;
   * the ledger's place + release pairs at most, same clients (PlaceHold then ReleaseHold of that
     hold, on ledger users). One pair phase runs before the first round and one after each
     round's flows, so that two bracket every flow phase: `ledger_pairs_per_s` is their mean,
     and `flow_vs_ledger` = flows_per_s / ledger_pairs_per_s;
   * CreateOrder alone offered half the round's flow rate (open loop: latency from each call's
     scheduled time): `create_p99_ms_half_load`;
   * the ledger's PlaceHold alone offered the same rate: `place_hold_p99_ms_same_rate`, and
     `create_p99_vs_place_hold_p99`.
   Ratios are taken within a round, so that the machine's drift between rounds cancels, and
   every figure printed is the median over the rounds. Every phase starts with a VACUUM
   (ANALYZE) of both databases, as pgbench starts its runs (see `PostgresServer.vacuum`): each
   step updates the order's row, and on a server with autovacuum off (CI's) the dead versions
   would otherwise accumulate from phase to phase.

Every phase uses the load generator (`loadgen.py`) with the same processes and concurrency. Each
slot of the load generator has users of its own (slot i takes users i, i + concurrency, ...), so
two flows of one user never run at once; the orders CreateOrder alone leaves open are spread so
that none finds the user's capacity taken. Every answer is checked (a flow's order must be FULL,
then DONE with nothing on credit): a wrong answer counts as an error, like a non-OK
status. Errors are printed per phase and counted per kind of phase over the run; any error fails
the run (exit status 1). Each phase also reports the CPU that the waiver, the ledger, the score
service and the PostgreSQL backends of each database used per operation, which moves much less
with the machine's load than throughput does.

The machine may be small and shared, so what counts are the ratios between figures of one run.
Targets: flow_vs_ledger >= 0.4 (a flow is two ledger writes and two order writes, a pair two
ledger writes), create_p99_vs_place_hold_p99 <= 2.0. A missed target is reported, not an error.
The last lines printed are `RESULT <name> <value>`.

    python -m tests.benchmarks.bench_waiver [--duration-s 15] [--rounds 3] [--users 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPOSITORY_ROOT))

import grpc  # noqa: E402
from google.protobuf import duration_pb2, timestamp_pb2  # noqa: E402
from sesame.ledger.v1 import ledger_service_pb2, ledger_service_pb2_grpc  # noqa: E402
from sesame.score.v1 import score_service_pb2, score_service_pb2_grpc  # noqa: E402
from sesame.type.v1 import money_pb2, time_range_pb2  # noqa: E402
from sesame.waiver.v1 import waiver_service_pb2, waiver_service_pb2_grpc  # noqa: E402

from services.datasets.consent import grant_consent  # noqa: E402
from services.suite.launch import (  # noqa: E402
    SUITE,
    free_port,
    plaintext_suite,
    start_suite,
    stop_all,
    suite_environment,
)
from tests.benchmarks.bench_ledger import (  # noqa: E402
    POSTGRES_SERVER_URL_DEFAULT,
    PostgresServer,
    format_value,
    processes_cpu_s,
    set_waiver_capacities,
    temporary_databases,
)
from tests.benchmarks.loadgen import (  # noqa: E402
    LoadResult,
    Operation,
    OperationContext,
    OperationOutcome,
    describe_error,
    run_load,
)

HOST = "127.0.0.1"
CURRENCY_CODE = "CNY"
# The seed policy the flows use (services/waiver/policies/seed.toml).
MERCHANT_ID = "sesame-demo"
SCENARIO_ID = "bike"
RISK_AMOUNT_MINOR = 9_900  # 99 CNY: the bike policy's starter waiver for a thin file
# Completed with nothing to charge: the hold is released as fulfilled and the order is DONE.
TOTAL_AMOUNT_MINOR = 0
# Longer than any run, so the users' scores cached when they were prepared stay cached.
SCORE_CACHE_MAX_AGE_S = 3600
WINDOW_S = 3_600
# The thin-file band allows 200 CNY of open waivers: two 99 CNY orders at once.
OPEN_ORDERS_PER_USER_MAX = 2

USER_COUNT = 3_000
CONCURRENCY = 16
CLIENT_PROCESSES = 2
DURATION_S = 15
WARMUP_S = 3
ROUNDS = 3
PREPARATION_CALLS_IN_FLIGHT = 16
CALL_TIMEOUT_S = 30.0
PREPARATION_TIMEOUT_S = 600.0

# The ledger's own holds (the same amounts as bench_ledger's): a capacity no hold ever exceeds.
LEDGER_HOLD_AMOUNT_MINOR = 1_250
LEDGER_HOLD_EXPIRES_IN_S = 3_600

TARGET_FLOW_VS_LEDGER = 0.4
TARGET_CREATE_P99_VS_PLACE_HOLD_P99 = 2.0


# --- Requests and checks ----------------------------------------------------------------------


class UnexpectedAnswer(Exception):
    """The server answered OK, but not what the workload must get; counts as an error."""


def _money(amount_minor: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code=CURRENCY_CODE, amount_minor=amount_minor)


def _timestamp(moment_s: float) -> timestamp_pb2.Timestamp:
    timestamp = timestamp_pb2.Timestamp()
    timestamp.FromNanoseconds(int(moment_s * 1e9))
    return timestamp


def create_request(user_id: str, out_order_no: str) -> waiver_service_pb2.CreateOrderRequest:
    """A bike order of 99 CNY whose window starts now (so it is DOING at once) and lasts an
    hour."""
    now_s = time.time()
    return waiver_service_pb2.CreateOrderRequest(
        request_id=f"{out_order_no}-create",
        merchant_id=MERCHANT_ID,
        out_order_no=out_order_no,
        user_id=user_id,
        scenario_id=SCENARIO_ID,
        risk_fund_type=waiver_service_pb2.RISK_FUND_TYPE_DEPOSIT,
        risk_amount=_money(RISK_AMOUNT_MINOR),
        time_range=time_range_pb2.TimeRange(
            start_time=_timestamp(now_s), end_time=_timestamp(now_s + WINDOW_S)
        ),
    )


def complete_request(out_order_no: str) -> waiver_service_pb2.CompleteOrderRequest:
    return waiver_service_pb2.CompleteOrderRequest(
        request_id=f"{out_order_no}-complete",
        merchant_id=MERCHANT_ID,
        out_order_no=out_order_no,
        total_amount=_money(TOTAL_AMOUNT_MINOR),
        end_time=_timestamp(time.time()),
    )


def check_created(order: waiver_service_pb2.Order) -> None:
    decision = order.decision
    if (
        decision.outcome != waiver_service_pb2.WAIVER_OUTCOME_FULL
        or decision.waived_amount.amount_minor != RISK_AMOUNT_MINOR
        or order.state != waiver_service_pb2.ORDER_STATE_DOING
    ):
        raise UnexpectedAnswer(
            f"created {waiver_service_pb2.OrderState.Name(order.state)} with "
            f"{waiver_service_pb2.WaiverOutcome.Name(decision.outcome)} "
            f"{decision.waived_amount.amount_minor} waived "
            f"({', '.join(reason.code for reason in decision.reasons) or 'no reasons'})"
        )


def check_completed(order: waiver_service_pb2.Order) -> None:
    if (
        order.state != waiver_service_pb2.ORDER_STATE_DONE
        or order.credit_charge_amount.amount_minor != TOTAL_AMOUNT_MINOR
    ):
        raise UnexpectedAnswer(
            f"completed {waiver_service_pb2.OrderState.Name(order.state)} with "
            f"{order.credit_charge_amount.amount_minor} on credit"
        )


async def flow(
    stub: waiver_service_pb2_grpc.WaiverServiceStub,
    user_id: str,
    out_order_no: str,
    timeout_s: float,
) -> OperationOutcome:
    """CreateOrder then CompleteOrder of one new order; each answer checked."""
    started = time.perf_counter()
    created = await stub.CreateOrder(create_request(user_id, out_order_no), timeout=timeout_s)
    check_created(created.order)
    created_at = time.perf_counter()
    completed = await stub.CompleteOrder(complete_request(out_order_no), timeout=timeout_s)
    check_completed(completed.order)
    completed_at = time.perf_counter()
    return OperationOutcome(
        units=2,
        step_latencies_s={
            "CreateOrder": created_at - started,
            "CompleteOrder": completed_at - created_at,
        },
    )


def waiver_user_id(number: int) -> str:
    return f"bench-waiver-u-{number}"


def slot_users(context: OperationContext) -> list[str]:
    """The slot's own users: slot i of n takes users i, i + n, i + 2n, ... so that no two slots
    ever share a user."""
    user_count: int = context.arguments["user_count"]
    slot_count: int = context.arguments["slot_count"]
    return [waiver_user_id(number) for number in range(context.slot_index, user_count, slot_count)]


# --- Workloads, imported by name in the load generator's worker processes ----------------------


async def order_flow(context: OperationContext) -> Operation:
    """One operation: a flow (CreateOrder then CompleteOrder) of the slot's next user."""
    stub = waiver_service_pb2_grpc.WaiverServiceStub(context.channel)
    users = slot_users(context)
    prefix = f"{context.arguments['order_tag']}-{context.slot_index}"
    numbers = itertools.count()

    async def operation() -> OperationOutcome:
        number = next(numbers)
        user_id = users[number % len(users)]
        return await flow(stub, user_id, f"{prefix}-{number}", context.call_timeout_s)

    return operation


async def create_order(context: OperationContext) -> Operation:
    """One operation: CreateOrder of a new order for the slot's next user, left open (its hold
    stays in place). The slot's users are taken from `first_number` on, where the last round's
    left off, so that no user holds more open orders than the thin-file capacity allows (see
    `CreatedOrders`)."""
    stub = waiver_service_pb2_grpc.WaiverServiceStub(context.channel)
    users = slot_users(context)
    prefix = f"{context.arguments['order_tag']}-{context.slot_index}"
    numbers = itertools.count(context.arguments["first_number"])

    async def operation() -> None:
        number = next(numbers)
        request = create_request(users[number % len(users)], f"{prefix}-{number}")
        created = await stub.CreateOrder(request, timeout=context.call_timeout_s)
        check_created(created.order)

    return operation


def ledger_user_id(number: int) -> str:
    # The users bench_ledger.set_waiver_capacities gives a capacity.
    return f"bench-u-{number}"


async def place_hold(context: OperationContext) -> Operation:
    """One operation: the ledger's PlaceHold for a random ledger user, left in place."""
    stub = ledger_service_pb2_grpc.LedgerServiceStub(context.channel)
    user_count: int = context.arguments["user_count"]
    prefix = f"{context.arguments['request_tag']}-{context.slot_index}"
    numbers = itertools.count()
    amount = _money(LEDGER_HOLD_AMOUNT_MINOR)
    expires_in = duration_pb2.Duration(seconds=LEDGER_HOLD_EXPIRES_IN_S)

    async def operation() -> None:
        number = next(numbers)
        request = ledger_service_pb2.PlaceHoldRequest(
            request_id=f"{prefix}-{number}-place",
            user_id=ledger_user_id(context.random.randrange(user_count)),
            amount=amount,
            expires_in=expires_in,
            reference=f"order-{number}",
        )
        await stub.PlaceHold(request, timeout=context.call_timeout_s)

    return operation


# --- The suite ---------------------------------------------------------------------------------


# The processes whose CPU each phase reports, by the name printed: the services, and the
# PostgreSQL backends serving each one's database (the score service has none).
CPU_USERS = ("waiver", "ledger", "score", "postgres_for_waiver", "postgres_for_ledger")


@dataclass(frozen=True)
class Suite:
    ledger_address: str
    score_address: str
    waiver_address: str
    processes: dict[str, subprocess.Popen[bytes]]
    server: PostgresServer
    # The database of each service that has one, by service name.
    databases: dict[str, str]

    def pids(self) -> dict[str, list[int]]:
        """The processes of each of CPU_USERS (the score service's workers are its children)."""
        pids = {
            name: [process.pid, *_children(process.pid)] for name, process in self.processes.items()
        }
        with self.server.admin_connection() as admin:
            rows = admin.execute(
                "SELECT datname, pid FROM pg_stat_activity WHERE datname = ANY(%s)",
                (list(self.databases.values()),),
            ).fetchall()
        for service, database in self.databases.items():
            pids[f"postgres_for_{service}"] = [
                int(str(pid)) for (name, pid) in rows if name == database
            ]
        return pids

    def require_running(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"the {name} service exited with code {process.returncode}")


def _children(pid: int) -> list[int]:
    children: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children += [int(child) for child in (task / "children").read_text().split()]
    except OSError:
        pass
    return children


def _cpu_s_by_pid(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds each process has used so far; a process that has gone is left out."""
    used: dict[int, float] = {}
    for pid in pids:
        cpu_s = processes_cpu_s([pid])
        if not math.isnan(cpu_s):
            used[pid] = cpu_s
    return used


@contextmanager
def cpu_used(suite: Suite, into: dict[str, float]) -> Iterator[None]:
    """Fills `into` with the CPU seconds each of CPU_USERS used inside the block. Processes that
    start inside it (a new database connection) count whole; those that end inside it are lost."""
    started = {name: _cpu_s_by_pid(pids) for name, pids in suite.pids().items()}
    yield
    for name, pids in suite.pids().items():
        ended = _cpu_s_by_pid(pids)
        into[name] = sum(cpu_s - started[name].get(pid, 0.0) for pid, cpu_s in ended.items())


@contextmanager
def running_suite(
    server: PostgresServer, ledger_database: str, waiver_database: str, log_level: str
) -> Iterator[Suite]:
    """Ledger, score and waiver started as `make run` starts them, on free ports."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("SESAME_")}
    for service in SUITE:
        environment[f"{service.environment_prefix}PORT"] = str(free_port())
        environment[f"{service.environment_prefix}LOG_LEVEL"] = log_level
    environment["SESAME_LEDGER_DATABASE_URL"] = server.database_url(ledger_database)
    environment["SESAME_WAIVER_DATABASE_URL"] = server.database_url(waiver_database)
    # A create uses the score the waiver kept, or the score service's cached one (the users were
    # scored when they were prepared, and nothing the flows write changes their credit history);
    # the default bound on a kept or cached score's age (a minute, for a month that ends) would
    # expire them between the phases of a run.
    environment["SESAME_SCORE_CACHE_MAX_AGE_S"] = str(SCORE_CACHE_MAX_AGE_S)
    environment["SESAME_WAIVER_SCORE_CACHE_MAX_AGE_S"] = str(SCORE_CACHE_MAX_AGE_S)
    # Measured in plaintext, as the ledger baseline it is compared with.
    environment = suite_environment({**environment, **plaintext_suite()})
    processes = start_suite(environment)
    try:
        ledger, score, waiver = (f"{HOST}:{service.port(environment)}" for service in SUITE)
        yield Suite(
            ledger_address=ledger,
            score_address=score,
            waiver_address=waiver,
            processes={
                service.name: process for service, process in zip(SUITE, processes, strict=True)
            },
            server=server,
            databases={"ledger": ledger_database, "waiver": waiver_database},
        )
    finally:
        # The waiver first, the ledger last: each stops before what it reads from.
        for process in reversed(processes):
            stop_all([process])


# --- Preparation -------------------------------------------------------------------------------


def describe_user(score_address: str, user_id: str) -> str:
    """What the score service says of the user: a score, or a thin file and why."""
    with grpc.insecure_channel(score_address) as channel:
        stub = score_service_pb2_grpc.ScoreServiceStub(channel)
        score = stub.GetScore(
            score_service_pb2.GetScoreRequest(user_id=user_id), timeout=CALL_TIMEOUT_S
        ).score
    if score.thin_file:
        return f"thin file ({score_service_pb2.ThinFileReason.Name(score.thin_file_reason)})"
    return f"scored {score.score}"


def prepare_waiver_users(waiver_address: str, user_count: int, order_tag: str) -> float:
    """One flow per user, so that the waiver has set every user's capacity in the ledger before
    anything is measured; returns flows per second. Raises on any failed flow."""
    return asyncio.run(_prepare_waiver_users(waiver_address, user_count, order_tag))


async def _prepare_waiver_users(waiver_address: str, user_count: int, order_tag: str) -> float:
    started = time.monotonic()
    in_flight = asyncio.Semaphore(PREPARATION_CALLS_IN_FLIGHT)
    async with grpc.aio.insecure_channel(waiver_address) as channel:
        stub = waiver_service_pb2_grpc.WaiverServiceStub(channel)

        async def prepare(number: int) -> None:
            async with in_flight:
                await flow(stub, waiver_user_id(number), f"{order_tag}-{number}", CALL_TIMEOUT_S)

        results = await asyncio.wait_for(
            asyncio.gather(
                *(prepare(number) for number in range(user_count)), return_exceptions=True
            ),
            timeout=PREPARATION_TIMEOUT_S,
        )
    failures = [result for result in results if isinstance(result, BaseException)]
    if failures:
        kinds = sorted({describe_error(failure) for failure in failures})
        raise RuntimeError(
            f"{len(failures)} of {user_count} preparation flows failed ({', '.join(kinds)}); "
            f"e.g. {failures[0]!r}"
        )
    return user_count / (time.monotonic() - started)


# --- Measuring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    duration_s: int
    warmup_s: int
    rounds: int
    user_count: int
    concurrency: int
    client_processes: int
    log_level: str

    @property
    def users_per_slot(self) -> int:
        """The fewest users a slot has (see `slot_users`)."""
        return self.user_count // self.concurrency


@dataclass
class Phase:
    """One measurement: the load generator's result and the CPU each service used meanwhile."""

    name: str
    result: LoadResult
    cpu_s: dict[str, float]

    def cpu_ms_per_operation(self, service: str) -> float:
        """CPU over the whole load (warm-up included) per operation done at the measured rate."""
        operations = self.result.operations_per_s * self.result.load_wall_s
        return self.cpu_s[service] / operations * 1000.0 if operations > 0 else math.nan


def measure(
    name: str,
    suite: Suite,
    plan: Plan,
    address: str,
    factory: str,
    *,
    rate_per_s: float | None = None,
    **arguments: object,
) -> Phase:
    # Every phase starts from vacuumed databases, as pgbench does (see PostgresServer.vacuum).
    suite.server.vacuum(list(suite.databases.values()))
    cpu_s: dict[str, float] = {}
    with cpu_used(suite, cpu_s):
        result = run_load(
            address,
            factory if ":" in factory else f"tests.benchmarks.bench_waiver:{factory}",
            concurrency=plan.concurrency,
            processes=plan.client_processes,
            duration_s=plan.duration_s,
            warmup_s=plan.warmup_s,
            arguments=arguments,
            call_timeout_s=CALL_TIMEOUT_S,
            rate_per_s=rate_per_s,
        )
    suite.require_running()
    phase = Phase(name, result, cpu_s)
    print(f"{name}:\n{result.summary()}")
    used = ", ".join(
        f"{user} {cpu_s[user] / result.load_wall_s:.2f} cores "
        f"({phase.cpu_ms_per_operation(user):.2f} ms per operation)"
        for user in CPU_USERS
    )
    print(f"  servers used: {used}")
    print(f"  errors: {result.errors}", flush=True)
    return phase


@dataclass
class CreatedOrders:
    """How far into its users each slot's CreateOrder phases have gone. Those orders stay open,
    and the thin-file capacity holds OPEN_ORDERS_PER_USER_MAX of them per user: a user asked
    for more would get less than a full waiver, which the run counts as an error."""

    plan: Plan
    next_number: int = 0

    def take(self, rate_per_s: float) -> int:
        """The first number of a phase at `rate_per_s`; refuses a phase that would go too far."""
        slot_period_s = self.plan.concurrency / rate_per_s
        numbers = math.ceil((self.plan.warmup_s + self.plan.duration_s) / slot_period_s) + 1
        first_number, self.next_number = self.next_number, self.next_number + numbers
        if self.next_number > OPEN_ORDERS_PER_USER_MAX * self.plan.users_per_slot:
            needed = math.ceil(self.next_number / OPEN_ORDERS_PER_USER_MAX) * self.plan.concurrency
            raise SystemExit(
                f"CreateOrder at {rate_per_s:.0f}/s would leave more open orders per user than "
                f"the thin-file capacity holds: run with --users {needed} or more"
            )
        return first_number


@dataclass
class Round:
    """Flows at most, bracketed by the ledger's pairs at most, then CreateOrder alone at half
    the flow rate and PlaceHold alone at the same rate. Ratios are taken within a round."""

    ledger_pairs_before: Phase
    flows: Phase
    ledger_pairs_after: Phase
    create_half_load: Phase
    place_hold_same_rate: Phase

    def phases(self) -> dict[str, Phase]:
        return {
            "flows": self.flows,
            "ledger_pairs": self.ledger_pairs_after,
            "create": self.create_half_load,
            "place_hold": self.place_hold_same_rate,
        }

    @property
    def ledger_pairs_per_s(self) -> float:
        """The mean of the two pair phases around the flows: the machine's speed drifts."""
        return (
            self.ledger_pairs_before.result.operations_per_s
            + self.ledger_pairs_after.result.operations_per_s
        ) / 2

    def figures(self) -> dict[str, float]:
        flows = self.flows.result
        create, place = self.create_half_load.result, self.place_hold_same_rate.result
        figures = {
            "flows_per_s": flows.operations_per_s,
            "ledger_pairs_per_s": self.ledger_pairs_per_s,
            "flow_vs_ledger": flows.operations_per_s / self.ledger_pairs_per_s,
            "create_p99_ms_half_load": create.latency_ms(0.99),
            "place_hold_p99_ms_same_rate": place.latency_ms(0.99),
            "create_p99_vs_place_hold_p99": create.latency_ms(0.99) / place.latency_ms(0.99),
            "flow_p50_ms": flows.latency_ms(0.5),
            "flow_p99_ms": flows.latency_ms(0.99),
            "flow_create_p50_ms": flows.step_latency_ms("CreateOrder", 0.5),
            "flow_complete_p50_ms": flows.step_latency_ms("CompleteOrder", 0.5),
            "ledger_pair_p50_ms": self.ledger_pairs_after.result.latency_ms(0.5),
            "half_load_offered_per_s": create.offered_per_s or math.nan,
            "create_achieved_per_s": create.operations_per_s,
            "create_p50_ms_half_load": create.latency_ms(0.5),
            "place_hold_achieved_per_s": place.operations_per_s,
            "place_hold_p50_ms_same_rate": place.latency_ms(0.5),
        }
        # CPU per operation moves much less with the machine's load than throughput does.
        for user in CPU_USERS:
            figures[f"flow_{user}_cpu_ms"] = self.flows.cpu_ms_per_operation(user)
        for user in ("ledger", "score", "postgres_for_ledger"):
            figures[f"ledger_pair_{user}_cpu_ms"] = self.ledger_pairs_after.cpu_ms_per_operation(
                user
            )
        for user in CPU_USERS:
            figures[f"create_{user}_cpu_ms"] = self.create_half_load.cpu_ms_per_operation(user)
        return figures


def measure_rounds(suite: Suite, plan: Plan, tag: str) -> list[Round]:
    waiver_users = {"user_count": plan.user_count, "slot_count": plan.concurrency}
    created = CreatedOrders(plan)

    def ledger_pairs(label: str) -> Phase:
        return measure(
            f"ledger place + release pairs at most ({label})",
            suite,
            plan,
            suite.ledger_address,
            "tests.benchmarks.bench_ledger:place_and_release",
            request_tag=f"{tag}-pair-{label.replace(' ', '-')}",
            user_count=plan.user_count,
        )

    rounds: list[Round] = []
    ledger_pairs_before = ledger_pairs("before round 1")
    for number in range(1, plan.rounds + 1):
        print(f"== round {number} of {plan.rounds}", flush=True)
        flows = measure(
            "flows (CreateOrder + CompleteOrder) at most",
            suite,
            plan,
            suite.waiver_address,
            "order_flow",
            order_tag=f"{tag}-f{number}",
            **waiver_users,
        )
        ledger_pairs_after = ledger_pairs(f"after the flows of round {number}")
        half_load_per_s = flows.result.operations_per_s / 2
        create_half_load = measure(
            f"CreateOrder alone offered {half_load_per_s:.1f}/s (half the flow rate)",
            suite,
            plan,
            suite.waiver_address,
            "create_order",
            rate_per_s=half_load_per_s,
            order_tag=f"{tag}-c{number}",
            first_number=created.take(half_load_per_s),
            **waiver_users,
        )
        place_hold_same_rate = measure(
            f"ledger PlaceHold alone offered {half_load_per_s:.1f}/s (the same rate)",
            suite,
            plan,
            suite.ledger_address,
            "place_hold",
            rate_per_s=half_load_per_s,
            request_tag=f"{tag}-place{number}",
            user_count=plan.user_count,
        )
        rounds.append(
            Round(
                ledger_pairs_before,
                flows,
                ledger_pairs_after,
                create_half_load,
                place_hold_same_rate,
            )
        )
        ledger_pairs_before = ledger_pairs_after
    return rounds


def results_of(rounds: list[Round], plan: Plan) -> dict[str, float]:
    """Every figure's median over the rounds (ratios taken within each round first), the
    errors of each kind of phase over the whole run, and the run's shape."""
    by_round = [measured.figures() for measured in rounds]
    results = {
        name: statistics.median(figures[name] for figures in by_round) for name in by_round[0]
    }
    if len(rounds) > 1:
        for name in HEADLINE_FIGURES:
            values = " ".join(format_value(figures[name]) for figures in by_round)
            print(f"{name} by round: {values}")
    phases = [measured.phases() for measured in rounds]
    results["ledger_pairs_errors"] = rounds[0].ledger_pairs_before.result.errors
    for kind in phases[0]:
        results[f"{kind}_errors"] = results.get(f"{kind}_errors", 0) + sum(
            round_phases[kind].result.errors for round_phases in phases
        )
    results["rounds"] = plan.rounds
    results["users"] = plan.user_count
    results["concurrency"] = plan.concurrency
    results["client_processes"] = plan.client_processes
    return results


HEADLINE_FIGURES = (
    "flows_per_s",
    "ledger_pairs_per_s",
    "flow_vs_ledger",
    "create_p99_ms_half_load",
    "place_hold_p99_ms_same_rate",
    "create_p99_vs_place_hold_p99",
)


# --- The run -----------------------------------------------------------------------------------


def parse_plan(argv: Sequence[str] | None) -> tuple[Plan, PostgresServer]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=int, default=DURATION_S, help="measured s per phase")
    parser.add_argument("--warmup-s", type=int, default=WARMUP_S, help="warm-up s per phase")
    parser.add_argument(
        "--rounds", type=int, default=ROUNDS, help="rounds of the four measurements (medians)"
    )
    parser.add_argument(
        "--users",
        type=int,
        default=USER_COUNT,
        help="waiver users (each gets one flow before measuring) and ledger users",
    )
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="calls in flight")
    parser.add_argument(
        "--client-processes", type=int, default=CLIENT_PROCESSES, help="load generator processes"
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="the services' log level",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("SESAME_BENCH_POSTGRES_URL", POSTGRES_SERVER_URL_DEFAULT),
        help="SQLAlchemy URL of the local server's admin database",
    )
    arguments = parser.parse_args(argv)
    if arguments.duration_s < 1 or arguments.warmup_s < 0 or arguments.rounds < 1:
        parser.error("--duration-s and --rounds must be positive and --warmup-s not negative")
    if arguments.concurrency < 1 or arguments.users < arguments.concurrency:
        parser.error("--concurrency must be positive and --users at least --concurrency")
    plan = Plan(
        duration_s=arguments.duration_s,
        warmup_s=arguments.warmup_s,
        rounds=arguments.rounds,
        user_count=arguments.users,
        concurrency=arguments.concurrency,
        client_processes=max(1, arguments.client_processes),
        log_level=arguments.log_level,
    )
    return plan, PostgresServer(arguments.postgres_url)


def run(plan: Plan, server: PostgresServer) -> tuple[dict[str, float], bool]:
    tag = secrets.token_hex(4)
    ledger_database, waiver_database = f"sesame_bench_{tag}_ledger", f"sesame_bench_{tag}_waiver"
    with ExitStack() as stack:
        stack.enter_context(temporary_databases(server, [ledger_database, waiver_database]))
        print("== starting ledger, score and waiver on PostgreSQL", flush=True)
        suite = stack.enter_context(
            running_suite(server, ledger_database, waiver_database, plan.log_level)
        )
        print(
            f"  ledger {suite.ledger_address}, score {suite.score_address}, "
            f"waiver {suite.waiver_address}"
        )
        print(f"== set-up: {plan.user_count} waiver users consent to be scored", flush=True)
        with grpc.insecure_channel(suite.ledger_address) as channel:
            grant_consent(
                channel,
                [waiver_user_id(number) for number in range(plan.user_count)],
                request_id_prefix=f"{tag}-consent-",
            )
        kind = describe_user(suite.score_address, waiver_user_id(0))
        print(
            f"== set-up: {plan.user_count} waiver users, each {kind} to the score service: the "
            f"bike policy's starter waiver makes their {RISK_AMOUNT_MINOR // 100} CNY orders FULL; "
            "one flow each first, so that the waiver has set their capacity",
            flush=True,
        )
        rate = prepare_waiver_users(suite.waiver_address, plan.user_count, f"{tag}-prep")
        prepared = describe_user(suite.score_address, waiver_user_id(0))
        print(f"  done ({rate:.0f} flows/s); a prepared user is now a {prepared}")
        print(f"== set-up: waiver capacity of {plan.user_count} ledger users", flush=True)
        rate = set_waiver_capacities([suite.ledger_address], plan.user_count, f"{tag}-ledger")
        print(f"  done ({rate:.0f} calls/s)", flush=True)
        rounds = measure_rounds(suite, plan, tag)
    valid = all(
        phase.result.valid
        for measured in rounds
        for phase in (measured.ledger_pairs_before, *measured.phases().values())
    )
    return results_of(rounds, plan), valid


def _stop_on_sigterm(signal_number: int, _frame: FrameType | None) -> None:
    # SystemExit unwinds through every `finally`: the suite stops and the databases are dropped.
    raise SystemExit(128 + signal_number)


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    plan, server = parse_plan(argv)
    started = time.monotonic()
    results, valid = run(plan, server)
    print(f"== done in {time.monotonic() - started:.0f}s")
    for name, target, met in (
        (
            "flow_vs_ledger",
            f">= {TARGET_FLOW_VS_LEDGER}",
            results["flow_vs_ledger"] >= TARGET_FLOW_VS_LEDGER,
        ),
        (
            "create_p99_vs_place_hold_p99",
            f"<= {TARGET_CREATE_P99_VS_PLACE_HOLD_P99}",
            results["create_p99_vs_place_hold_p99"] <= TARGET_CREATE_P99_VS_PLACE_HOLD_P99,
        ),
    ):
        print(f"target {name} {target}: {'met' if met else 'MISSED'}")
    for name, value in results.items():
        print(f"RESULT {name} {format_value(value)}")
    if not valid:
        errors = ", ".join(
            f"{name.removesuffix('_errors')} {int(value)}"
            for name, value in results.items()
            if name.endswith("_errors") and value
        )
        print(
            f"FAILED: calls failed or answered wrongly ({errors or 'nothing measured'}); "
            "the figures above do not count",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
