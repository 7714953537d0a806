"""The soak (`make soak MINUTES=10`): all three services driven for a long time at half of their
most, with the real mix, to see what only time shows: errors that come late, memory that grows,
latency that drifts, a chain that breaks.

One run:

1. starts ledger, score and waiver as `make run` starts them (`services.suite.launch`, signed
   checkpoints every minute included), each of ledger and waiver on a database of its own
   created on the local PostgreSQL server (dropped at the end, even on failure). Where that
   server runs with autovacuum off (CI's does), the soak vacuums both databases every minute
   from the calibration on, as autovacuum would in production: without it, dead row versions
   pile up and the run measures the missing vacuum, not the services;
2. measures the most the suite does with the mix (closed loop, `--calibrate-s`), and offers
   half of it from then on (open loop: latency counts from each operation's scheduled time),
   after a warm-up of 30 s at that rate;
3. runs the mix at that rate minute after minute (`--minutes`), each minute one run of the load
   generator (`loadgen.py`), and after each minute reads the resident memory of every service
   process (the score service's workers included);
4. at the end asks the ledger to verify every chain.

The mix, per operation (each slot has users of its own, so that one user's steps never race):

  pay          CreateOrder (bike, 99 CNY, a thin file: FULL) -> CompleteOrder with 3 CNY on
               credit (the hold captured into an obligation) -> SyncPayment of it (closed on time)
  nothing due  CreateOrder -> CompleteOrder with nothing to charge (the hold released)
  cancel       CreateOrder -> CancelOrder (the hold released)
  score        GetScore of one of the slot's users (cached), or of a new one, who never
               consented (read from the ledger and refused, CONSENT_MISSING, as expected)
  expiry       the ledger's PlaceHold of a hold that expires in two seconds, for the ledger's
               sweeper to expire (the waiver's sweeper and recovery pass run all along too)

Printed last, as `RESULT <name> <value>`: `errors` (every failed or wrong answer while soaking),
`rss_growth_pct` (the services' resident memory after the last minute against after the first,
which is warm), `p99_drift_pct` (the last minute's operation p99 against the first's), and
`chains_verified` (1 when VerifyChain found every chain intact). Targets: no error, memory
growth under 10%, the last minute's p99 within 20% of the first's, every chain intact. A missed
target is reported, and the exit status is 1.

    python -m tests.benchmarks.soak [--minutes 10] [--calibrate-s 30] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import itertools
import os
import secrets
import signal
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
from google.protobuf import duration_pb2  # noqa: E402
from sesame.ledger.v1 import ledger_service_pb2, ledger_service_pb2_grpc  # noqa: E402
from sesame.score.v1 import score_service_pb2, score_service_pb2_grpc  # noqa: E402
from sesame.waiver.v1 import waiver_service_pb2, waiver_service_pb2_grpc  # noqa: E402

from services.common.grpc_errors import error_details  # noqa: E402
from services.datasets.consent import grant_consent  # noqa: E402
from services.suite.launch import (  # noqa: E402
    SUITE,
    free_port,
    plaintext_suite,
    start_suite,
    stop_all,
    suite_environment,
    with_local_checkpoint_key,
)
from tests.benchmarks.bench_ledger import (  # noqa: E402
    POSTGRES_SERVER_URL_DEFAULT,
    PostgresServer,
    set_waiver_capacities,
    temporary_databases,
    vacuumed_while_running,
)
from tests.benchmarks.bench_waiver import (  # noqa: E402
    MERCHANT_ID,
    UnexpectedAnswer,
    _money,
    _timestamp,
    check_created,
    create_request,
)
from tests.benchmarks.loadgen import (  # noqa: E402
    LoadResult,
    Operation,
    OperationContext,
    OperationOutcome,
    run_load,
)

HOST = "127.0.0.1"
MINUTES = 10
CALIBRATE_S = 30
WARMUP_S = 5
WARMUP_AT_RATE_S = 30
CONCURRENCY = 16
CLIENT_PROCESSES = 2
CALL_TIMEOUT_S = 30.0
USERS_PER_SLOT = 40
CHARGE_MINOR = 300
EXPIRING_HOLD_S = 2
EXPIRING_HOLD_MINOR = 100
# The ledger users the expiring holds are placed for, each with a large capacity.
LEDGER_USERS = 200
MIX = (("pay", 3), ("nothing due", 2), ("cancel", 2), ("score", 3), ("expiry", 1))
TARGET_RSS_GROWTH_PCT = 10.0
TARGET_P99_DRIFT_PCT = 20.0


# --- Workload, imported by name in the load generator's worker processes -----------------------


def slot_user(run_tag: str, slot_index: int, number: int) -> str:
    return f"soak-{run_tag}-s{slot_index}-u{number % USERS_PER_SLOT}"


def _slot_user(context: OperationContext, number: int) -> str:
    return slot_user(context.arguments["run_tag"], context.slot_index, number)


def _check_state(order: waiver_service_pb2.Order, state: int, charge_minor: int) -> None:
    if order.state != state or order.credit_charge_amount.amount_minor != charge_minor:
        raise UnexpectedAnswer(
            f"{waiver_service_pb2.OrderState.Name(order.state)} with"
            f" {order.credit_charge_amount.amount_minor} on credit, expected"
            f" {waiver_service_pb2.OrderState.Name(state)} with {charge_minor}"
        )


async def soak_mix(context: OperationContext) -> Operation:
    """One operation: the next kind of the mix (drawn by weight) for the slot's next user."""
    waiver = waiver_service_pb2_grpc.WaiverServiceStub(context.channel)
    score_channel = grpc.aio.insecure_channel(context.arguments["score_address"])
    ledger_channel = grpc.aio.insecure_channel(context.arguments["ledger_address"])
    scores = score_service_pb2_grpc.ScoreServiceStub(score_channel)
    ledger = ledger_service_pb2_grpc.LedgerServiceStub(ledger_channel)
    kinds = [kind for kind, weight in MIX for _ in range(weight)]
    prefix = f"soak-{context.arguments['order_tag']}-{context.slot_index}"
    numbers = itertools.count()
    timeout_s = context.call_timeout_s

    async def flow(kind: str, number: int) -> OperationOutcome:
        out_order_no = f"{prefix}-{number}"
        key = {"merchant_id": MERCHANT_ID, "out_order_no": out_order_no}
        steps: dict[str, float] = {}
        started = time.perf_counter()
        created = await waiver.CreateOrder(
            create_request(_slot_user(context, number), out_order_no), timeout=timeout_s
        )
        check_created(created.order)
        steps["CreateOrder"] = time.perf_counter() - started
        if kind == "cancel":
            began = time.perf_counter()
            cancelled = await waiver.CancelOrder(
                waiver_service_pb2.CancelOrderRequest(
                    request_id=f"{out_order_no}-cancel", reason="soak", **key
                ),
                timeout=timeout_s,
            )
            _check_state(cancelled.order, waiver_service_pb2.ORDER_STATE_REVOKED, 0)
            steps["CancelOrder"] = time.perf_counter() - began
            return OperationOutcome(units=2, step_latencies_s=steps)
        charge_minor = CHARGE_MINOR if kind == "pay" else 0
        began = time.perf_counter()
        completed = await waiver.CompleteOrder(
            waiver_service_pb2.CompleteOrderRequest(
                request_id=f"{out_order_no}-complete",
                total_amount=_money(charge_minor),
                end_time=_timestamp(time.time()),
                **key,
            ),
            timeout=timeout_s,
        )
        steps["CompleteOrder"] = time.perf_counter() - began
        if kind == "nothing due":
            _check_state(completed.order, waiver_service_pb2.ORDER_STATE_DONE, 0)
            return OperationOutcome(units=2, step_latencies_s=steps)
        _check_state(completed.order, waiver_service_pb2.ORDER_STATE_AWAITING_PAYMENT, charge_minor)
        began = time.perf_counter()
        paid = await waiver.SyncPayment(
            waiver_service_pb2.SyncPaymentRequest(
                request_id=f"{out_order_no}-pay",
                amount=_money(charge_minor),
                paid_time=_timestamp(time.time()),
                **key,
            ),
            timeout=timeout_s,
        )
        _check_state(paid.order, waiver_service_pb2.ORDER_STATE_DONE, charge_minor)
        steps["SyncPayment"] = time.perf_counter() - began
        return OperationOutcome(units=3, step_latencies_s=steps)

    async def operation() -> OperationOutcome:
        number = next(numbers)
        kind = context.random.choice(kinds)
        if kind == "score":
            new_user = f"{prefix}-new-{number}"
            user = _slot_user(context, number) if context.random.random() < 0.8 else new_user
            began = time.perf_counter()
            try:
                await scores.GetScore(
                    score_service_pb2.GetScoreRequest(user_id=user), timeout=timeout_s
                )
            except grpc.aio.AioRpcError as error:
                # A new user never consented: the score service reads the ledger and refuses,
                # which is the answer expected of it.
                if error_details(error).reason != "CONSENT_MISSING" or user != new_user:
                    raise
            return OperationOutcome(step_latencies_s={"GetScore": time.perf_counter() - began})
        if kind == "expiry":
            began = time.perf_counter()
            await ledger.PlaceHold(
                ledger_service_pb2.PlaceHoldRequest(
                    request_id=f"{prefix}-{number}-expiring",
                    user_id=f"bench-u-{context.random.randrange(LEDGER_USERS)}",
                    amount=_money(EXPIRING_HOLD_MINOR),
                    expires_in=duration_pb2.Duration(seconds=EXPIRING_HOLD_S),
                    reference=f"{prefix}-{number}",
                ),
                timeout=timeout_s,
            )
            return OperationOutcome(step_latencies_s={"PlaceHold": time.perf_counter() - began})
        return await flow(kind, number)

    return operation


# --- The suite ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Suite:
    addresses: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]]

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each service, its child processes (score workers) included."""
        return {
            name: sum(_rss_bytes(pid) for pid in [process.pid, *_children(process.pid)])
            for name, process in self.processes.items()
        }

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


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@contextmanager
def running_suite(
    server: PostgresServer, ledger_database: str, waiver_database: str, directory: Path
) -> Iterator[Suite]:
    """Ledger, score and waiver as `make run` starts them, on free ports and the databases."""
    directory.mkdir(parents=True, exist_ok=True)
    environment = {key: value for key, value in os.environ.items() if not key.startswith("SESAME_")}
    for service in SUITE:
        environment[f"{service.environment_prefix}PORT"] = str(free_port())
        environment[f"{service.environment_prefix}LOG_LEVEL"] = "WARNING"
    environment["SESAME_LEDGER_DATABASE_URL"] = server.database_url(ledger_database)
    environment["SESAME_WAIVER_DATABASE_URL"] = server.database_url(waiver_database)
    environment["SESAME_LEDGER_CHECKPOINT_KEY_FILE"] = str(directory / "checkpoint-key.pem")
    environment["SESAME_LEDGER_CHECKPOINT_LOG_FILE"] = str(directory / "checkpoints.jsonl")
    environment = suite_environment(with_local_checkpoint_key({**environment, **plaintext_suite()}))
    processes = start_suite(environment)
    try:
        yield Suite(
            {service.name: f"{HOST}:{service.port(environment)}" for service in SUITE},
            {service.name: process for service, process in zip(SUITE, processes, strict=True)},
        )
    finally:
        for process in reversed(processes):
            stop_all([process])


# --- The run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    minutes: int
    calibrate_s: int
    concurrency: int
    client_processes: int


@dataclass(frozen=True)
class Minute:
    result: LoadResult
    rss_bytes: dict[str, int]


def load(suite: Suite, plan: Plan, run_tag: str, order_tag: str, **options: float) -> LoadResult:
    return run_load(
        suite.addresses["waiver"],
        "tests.benchmarks.soak:soak_mix",
        concurrency=plan.concurrency,
        processes=plan.client_processes,
        arguments={
            "run_tag": run_tag,
            "order_tag": order_tag,
            "score_address": suite.addresses["score"],
            "ledger_address": suite.addresses["ledger"],
        },
        call_timeout_s=CALL_TIMEOUT_S,
        **options,  # type: ignore[arg-type]
    )


def soak(plan: Plan, server: PostgresServer) -> dict[str, float]:
    tag = secrets.token_hex(4)
    ledger_database, waiver_database = f"sesame_soak_{tag}_ledger", f"sesame_soak_{tag}_waiver"
    with ExitStack() as stack:
        stack.enter_context(temporary_databases(server, [ledger_database, waiver_database]))
        print("== starting ledger, score and waiver on PostgreSQL", flush=True)
        suite = stack.enter_context(
            running_suite(
                server, ledger_database, waiver_database, REPOSITORY_ROOT / "var" / "soak" / tag
            )
        )
        print(f"  {suite.addresses}", flush=True)
        set_waiver_capacities([suite.addresses["ledger"]], LEDGER_USERS, f"{tag}-ledger")
        # The slots' users consent to be scored, or the waiver would refuse their orders.
        with grpc.insecure_channel(suite.addresses["ledger"]) as channel:
            grant_consent(
                channel,
                [
                    slot_user(tag, slot_index, number)
                    for slot_index in range(plan.concurrency)
                    for number in range(USERS_PER_SLOT)
                ],
                request_id_prefix=f"{tag}-consent-",
            )

        stack.enter_context(vacuumed_while_running(server, [ledger_database, waiver_database]))
        print(f"== the most the suite does with the mix ({plan.calibrate_s} s, closed loop)")
        calibration = load(
            suite, plan, tag, "calibrate", duration_s=plan.calibrate_s, warmup_s=WARMUP_S
        )
        print(calibration.summary(), flush=True)
        if calibration.operations == 0:
            raise RuntimeError("the calibration finished no operation")
        rate = calibration.operations_per_s / 2
        print(f"== soaking at {rate:.1f} operations/s for {plan.minutes} minutes", flush=True)

        minutes: list[Minute] = []
        for number in range(plan.minutes):
            # The first minute follows a warm-up at the same rate: it is the baseline of the
            # drift, not the settling after the calibration.
            warmup_s = WARMUP_AT_RATE_S if number == 0 else 0
            result = load(
                suite, plan, tag, f"m{number}", duration_s=60, warmup_s=warmup_s, rate_per_s=rate
            )
            suite.require_running()
            minutes.append(Minute(result, suite.rss_bytes()))
            rss = ", ".join(
                f"{name} {b / 2**20:.0f} MiB" for name, b in minutes[-1].rss_bytes.items()
            )
            print(
                f"  minute {number + 1}: {result.operations} operations"
                f" ({result.operations_per_s:.1f}/s), errors {result.errors},"
                f" p50 {result.latency_ms(0.5):.1f} ms, p99 {result.latency_ms(0.99):.1f} ms;"
                f" {rss}",
                flush=True,
            )
            for kind, count in result.error_kinds.items():
                print(f"    error {kind}: {count}")
            for example in result.error_examples:
                print(f"    error example: {example}")

        with grpc.insecure_channel(suite.addresses["ledger"]) as channel:
            report = ledger_service_pb2_grpc.LedgerServiceStub(channel).VerifyChain(
                ledger_service_pb2.VerifyChainRequest(), timeout=600
            )
        print(
            f"== VerifyChain: intact={report.intact}, {report.users_checked} users,"
            f" {report.entries_checked} entries"
        )

    first, last = minutes[0], minutes[-1]
    first_rss, last_rss = sum(first.rss_bytes.values()), sum(last.rss_bytes.values())
    first_p99, last_p99 = first.result.latency_ms(0.99), last.result.latency_ms(0.99)
    return {
        "errors": sum(minute.result.errors for minute in minutes),
        "rss_growth_pct": (last_rss / first_rss - 1) * 100,
        "p99_drift_pct": (last_p99 / first_p99 - 1) * 100,
        "chains_verified": int(report.intact),
        "offered_per_s": rate,
        "calibration_per_s": calibration.operations_per_s,
        "calibration_errors": calibration.errors,
    }


def targets_met(results: dict[str, float]) -> bool:
    return (
        results["errors"] == 0
        and results["rss_growth_pct"] < TARGET_RSS_GROWTH_PCT
        and abs(results["p99_drift_pct"]) <= TARGET_P99_DRIFT_PCT
        and results["chains_verified"] == 1
    )


def parse_plan(argv: Sequence[str] | None) -> tuple[Plan, PostgresServer]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=MINUTES, help="minutes of soaking")
    parser.add_argument(
        "--calibrate-s", type=int, default=CALIBRATE_S, help="s of the closed-loop calibration"
    )
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="calls in flight")
    parser.add_argument(
        "--client-processes", type=int, default=CLIENT_PROCESSES, help="load generator processes"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("SESAME_BENCH_POSTGRES_URL", POSTGRES_SERVER_URL_DEFAULT),
        help="SQLAlchemy URL of the local server's admin database",
    )
    arguments = parser.parse_args(argv)
    if arguments.minutes < 2 or arguments.calibrate_s < 1 or arguments.concurrency < 1:
        parser.error("--minutes must be at least 2, --calibrate-s and --concurrency positive")
    plan = Plan(
        arguments.minutes,
        arguments.calibrate_s,
        arguments.concurrency,
        max(1, arguments.client_processes),
    )
    return plan, PostgresServer(arguments.postgres_url)


def _stop_on_sigterm(signal_number: int, _frame: FrameType | None) -> None:
    # SystemExit unwinds through every `finally`: the suite stops and the databases are dropped.
    raise SystemExit(128 + signal_number)


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    plan, server = parse_plan(argv)
    results = soak(plan, server)
    met = targets_met(results)
    print(
        f"== targets: errors 0, rss_growth_pct < {TARGET_RSS_GROWTH_PCT:.0f},"
        f" |p99_drift_pct| <= {TARGET_P99_DRIFT_PCT:.0f}, chains_verified 1:"
        f" {'met' if met else 'MISSED'}"
    )
    for name, value in results.items():
        print(
            f"RESULT {name} {value:.2f}" if isinstance(value, float) else f"RESULT {name} {value}"
        )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
