"""The ledger benchmark (`make bench-ledger`): the ledger against pgbench on the same machine.

One run measures, in order:

1. the baseline: pgbench's built-in TPC-B-like script, 16 clients, on a database of its own;
2. the ledger on PostgreSQL: PlaceHold then ReleaseHold of that hold, 16 calls in flight over
   10,000 users whose waiver capacity is set first (high enough that no hold is ever refused);
3. the ledger on PostgreSQL: RecordPartnerStatements, batches of 500 new users each with a
   credit line and 6 statements (3,500 journal entries a batch), 4 batches in flight;
4. the baseline again, so that the two pgbench runs bracket the PostgreSQL figures;
5. the same two ledger workloads on SQLite (a temporary file), for information.

The machine is shared and its speed drifts, so what counts are the ratios against pgbench
measured in the same run (the mean of its two runs). The ledger's CPU per operation is
reported too: it moves much less with the machine's load than throughput does. The last lines
printed are `RESULT <name> <value>`, one per figure. Targets: single ledger operations at least
0.3 times pgbench's transactions per second; statement entries at least 2 times. Exit status 1
when a figure is not valid (any failed operation); a missed target is reported, not an error.

    python -m tests.benchmarks.bench_ledger [--duration-s 20] [--quick]

Every database the run creates (`sesame_bench_<tag>_*`) is dropped at its end, even on failure.
Only loopback addresses are used: the ledger listens on 127.0.0.1 and PostgreSQL must be local.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import itertools
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
if __package__ in (None, ""):
    # Run as a script (python tests/benchmarks/bench_ledger.py): make the repository importable,
    # here and in the spawned load generator processes, which inherit sys.path.
    sys.path.insert(0, str(REPOSITORY_ROOT))

import grpc  # noqa: E402
import psycopg  # noqa: E402
from google.protobuf import duration_pb2  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from sesame.ledger.v1 import ledger_service_pb2, ledger_service_pb2_grpc  # noqa: E402
from sesame.type.v1 import money_pb2  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from tests.benchmarks.loadgen import (  # noqa: E402
    LoadResult,
    Operation,
    OperationContext,
    OperationOutcome,
    describe_error,
    percentile,
    run_load,
)

LEDGER_SERVICE = "sesame.ledger.v1.LedgerService"
LOOPBACK_HOST = "127.0.0.1"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
POSTGRES_SERVER_URL_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
POSTGRES_CONNECT_TIMEOUT_S = 5
# PostgreSQL's default autovacuum_naptime: how often autovacuum looks at each database.
AUTOVACUUM_NAPTIME_S = 60
CURRENCY_CODE = "CNY"

PGBENCH_SCALE = 16
PGBENCH_CLIENTS = 16
PGBENCH_THREADS = 2
PGBENCH_INIT_TIMEOUT_S = 180.0
PGBENCH_TPS_PATTERN = re.compile(r"^tps = ([0-9.]+)", re.MULTILINE)

USER_COUNT = 10_000
# Setting capacities takes a call per user, the longest set-up step; a smoke run needs fewer.
QUICK_USER_COUNT = 1_000
LEDGER_CONCURRENCY = 16
# So high that no hold is ever refused: 16 holds of HOLD_AMOUNT_MINOR open at once use 0.02%
# of it. INSUFFICIENT_CAPACITY during the run would be a bug in this workload.
WAIVER_CAPACITY_MINOR = 100_000_000
HOLD_AMOUNT_MINOR = 1_250
HOLD_EXPIRES_IN_S = 3_600
CAPACITY_CALLS_IN_FLIGHT = 64
CAPACITY_SETUP_TIMEOUT_S = 240.0

STATEMENT_CLIENTS = 4
REPORTS_PER_BATCH = 500
REPORTS_PER_BATCH_MAX = 1000  # the contract's limit
STATEMENTS_PER_REPORT = 6
ENTRIES_PER_REPORT = 1 + STATEMENTS_PER_REPORT  # the credit line and each statement
STATEMENT_CALL_TIMEOUT_S = 120.0
LEDGER_CALL_TIMEOUT_S = 30.0

# Where the ledger's logs are kept when a run fails (var/ is ignored by git).
FAILED_RUN_LOGS = REPOSITORY_ROOT / "var" / "bench-ledger-logs"
LEDGER_STARTUP_TIMEOUT_S = 60.0
LEDGER_STOP_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.1

TARGET_LEDGER_OPS_VS_PGBENCH = 0.3
TARGET_STATEMENTS_VS_PGBENCH = 2.0


# --- Workloads, imported by name in the load generator's worker processes ----------------------


def _money(amount_minor: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code=CURRENCY_CODE, amount_minor=amount_minor)


async def place_and_release(context: OperationContext) -> Operation:
    """One operation: PlaceHold for a random user, then ReleaseHold of that hold (2 ledger ops)."""
    stub = ledger_service_pb2_grpc.LedgerServiceStub(context.channel)
    user_count: int = context.arguments["user_count"]
    request_prefix = f"{context.arguments['request_tag']}-{context.slot_index}"
    numbers = itertools.count()
    expires_in = duration_pb2.Duration(seconds=HOLD_EXPIRES_IN_S)
    amount = _money(HOLD_AMOUNT_MINOR)
    timeout_s = context.call_timeout_s

    async def operation() -> OperationOutcome:
        number = next(numbers)
        place_request = ledger_service_pb2.PlaceHoldRequest(
            request_id=f"{request_prefix}-{number}-place",
            user_id=f"bench-u-{context.random.randrange(user_count)}",
            amount=amount,
            expires_in=expires_in,
            reference=f"order-{number}",
        )
        started = time.perf_counter()
        placed = await stub.PlaceHold(place_request, timeout=timeout_s)
        placed_at = time.perf_counter()
        release_request = ledger_service_pb2.ReleaseHoldRequest(
            request_id=f"{request_prefix}-{number}-release",
            hold_id=placed.hold.hold_id,
            fulfilled=True,
        )
        await stub.ReleaseHold(release_request, timeout=timeout_s)
        released_at = time.perf_counter()
        return OperationOutcome(
            units=2,
            step_latencies_s={
                "PlaceHold": placed_at - started,
                "ReleaseHold": released_at - placed_at,
            },
        )

    return operation


class UnexpectedResponse(Exception):
    """The server answered, but not with what the workload must get; counts as an error."""


def _statement_batch_template(reports: int) -> ledger_service_pb2.RecordPartnerStatementsRequest:
    request = ledger_service_pb2.RecordPartnerStatementsRequest()
    statuses = (
        (ledger_service_pb2.REPAYMENT_STATUS_PAID_IN_FULL, 0),
        (ledger_service_pb2.REPAYMENT_STATUS_REVOLVING, 0),
        (ledger_service_pb2.REPAYMENT_STATUS_NO_USE, 0),
        (ledger_service_pb2.REPAYMENT_STATUS_LATE, 1),
        (ledger_service_pb2.REPAYMENT_STATUS_PAID_IN_FULL, 0),
        (ledger_service_pb2.REPAYMENT_STATUS_REVOLVING, 0),
    )
    for index in range(reports):
        report = request.reports.add(
            partner_id="bench-partner", credit_line=_money(5_000_000 + 1_000 * (index % 50))
        )
        for month, (status, months_late) in enumerate(statuses[:STATEMENTS_PER_REPORT], 1):
            balance_minor = 0 if status == ledger_service_pb2.REPAYMENT_STATUS_NO_USE else 80_000
            report.statements.add(
                period=ledger_service_pb2.StatementPeriod(year=2025, month=month),
                balance=_money(balance_minor + 100 * (index % 7)),
                amount_paid=_money(balance_minor // 2),
                repayment_status=status,
                months_late=months_late,
            )
    return request


async def record_statements(context: OperationContext) -> Operation:
    """One operation: a RecordPartnerStatements batch for users never seen before.

    New users each time, so that every credit line and statement is journaled (an identical
    statement for a known user would change nothing and write no entry). Units are the journal
    entries the server says it wrote; anything but every one of them is an error.
    """
    stub = ledger_service_pb2_grpc.LedgerServiceStub(context.channel)
    reports_per_batch: int = context.arguments["reports_per_batch"]
    prefix = f"bench-s-{context.arguments['request_tag']}-{context.slot_index}"
    numbers = itertools.count()
    # Built once: each batch only changes the ids, so the client spends little CPU of its own.
    request = _statement_batch_template(reports_per_batch)
    expected_entries = reports_per_batch * ENTRIES_PER_REPORT
    timeout_s = context.call_timeout_s

    async def operation() -> OperationOutcome:
        number = next(numbers)
        request.request_id = f"{prefix}-{number}"
        for index, report in enumerate(request.reports):
            report.user_id = f"{prefix}-{number}-{index}"
        response = await stub.RecordPartnerStatements(request, timeout=timeout_s)
        entries = sum(
            result.statements_recorded + int(result.credit_line_recorded)
            for result in response.results
        )
        if entries != expected_entries:
            raise UnexpectedResponse(f"wrote {entries} entries, expected {expected_entries}")
        return OperationOutcome(units=entries)

    return operation


# --- PostgreSQL and pgbench --------------------------------------------------------------------


@dataclass(frozen=True)
class PostgresServer:
    """Where the local PostgreSQL server is, from a SQLAlchemy URL naming its admin database."""

    url: str

    def __post_init__(self) -> None:
        host = make_url(self.url).host or ""
        if host not in LOOPBACK_HOSTS:
            raise SystemExit(f"the benchmark uses loopback addresses only, not {host!r}")

    @property
    def host(self) -> str:
        return make_url(self.url).host or LOOPBACK_HOST

    @property
    def port(self) -> int:
        return make_url(self.url).port or 5432

    @property
    def user(self) -> str:
        return make_url(self.url).username or "postgres"

    def database_url(self, database: str) -> str:
        return make_url(self.url).set(database=database).render_as_string(hide_password=False)

    def admin_connection(self) -> psycopg.Connection[tuple[object, ...]]:
        return self.connection(make_url(self.url).database or "postgres")

    def connection(self, database: str) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection to one database of the server."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=make_url(self.url).password,
            dbname=database,
            connect_timeout=POSTGRES_CONNECT_TIMEOUT_S,
            autocommit=True,
        )

    def autovacuum_is_on(self) -> bool:
        with self.admin_connection() as admin:
            row = admin.execute("SHOW autovacuum").fetchone()
        return row is not None and row[0] == "on"

    def vacuum(self, databases: Sequence[str]) -> None:
        """VACUUM (ANALYZE) of every table of each database: what autovacuum does in production.

        CI's PostgreSQL runs with autovacuum off. A benchmark that updates rows for minutes
        would otherwise measure dead row versions piling up in tables and indexes (the waiver's
        orders are updated at every step), which no production server lets happen; pgbench,
        the ledger benchmark's baseline, vacuums before it runs too.
        """
        for database in databases:
            with self.connection(database) as connection:
                connection.execute("VACUUM (ANALYZE)")


@contextmanager
def vacuumed_while_running(
    server: PostgresServer, databases: Sequence[str], interval_s: float = AUTOVACUUM_NAPTIME_S
) -> Iterator[None]:
    """Where the server's autovacuum is off, vacuums the databases every `interval_s` (the
    default autovacuum_naptime) on a thread of its own while the block runs, as autovacuum
    would; where it is on, leaves it to the server."""
    if server.autovacuum_is_on():
        yield
        return
    print(
        f"  the server runs with autovacuum off: vacuuming {', '.join(databases)} every"
        f" {interval_s:.0f} s, as autovacuum would",
        flush=True,
    )
    stopped = threading.Event()

    def vacuum_until_stopped() -> None:
        while not stopped.wait(interval_s):
            server.vacuum(databases)

    vacuumer = threading.Thread(target=vacuum_until_stopped, name="vacuum", daemon=True)
    vacuumer.start()
    try:
        yield
    finally:
        stopped.set()
        vacuumer.join()


@contextmanager
def temporary_databases(server: PostgresServer, names: Sequence[str]) -> Iterator[None]:
    """Creates the databases, and drops them at the end whatever happened in between."""
    with server.admin_connection() as admin:
        created: list[str] = []
        try:
            for name in names:
                admin.execute(f'CREATE DATABASE "{name}"')
                created.append(name)
            yield
        finally:
            for name in created:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            print(f"dropped databases: {', '.join(created) or 'none'}", flush=True)


def _pgbench_command(server: PostgresServer, *arguments: str) -> list[str]:
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        raise SystemExit("pgbench is not on PATH (Debian: apt-get install postgresql-client)")
    connection = ["-h", server.host, "-p", str(server.port), "-U", server.user]
    return [pgbench, *connection, *arguments]


def _pgbench_environment(server: PostgresServer) -> dict[str, str]:
    environment = dict(os.environ)
    password = make_url(server.url).password
    if password:
        environment["PGPASSWORD"] = str(password)
    return environment


def initialise_pgbench(server: PostgresServer, database: str) -> None:
    """Creates and fills pgbench's tables at scale 16 (1.6 million accounts)."""
    started = time.monotonic()
    subprocess.run(
        _pgbench_command(server, "-i", "-q", "-s", str(PGBENCH_SCALE), database),
        env=_pgbench_environment(server),
        check=True,
        capture_output=True,
        timeout=PGBENCH_INIT_TIMEOUT_S,
    )
    print(f"pgbench: initialised scale {PGBENCH_SCALE} in {time.monotonic() - started:.1f}s")


def run_pgbench(server: PostgresServer, database: str, duration_s: int) -> float:
    """Runs pgbench's built-in TPC-B-like script with 16 clients; returns its tps."""
    completed = subprocess.run(
        _pgbench_command(
            server,
            *("-c", str(PGBENCH_CLIENTS), "-j", str(PGBENCH_THREADS), "-T", str(duration_s)),
            database,
        ),
        env=_pgbench_environment(server),
        check=True,
        capture_output=True,
        text=True,
        timeout=duration_s + PGBENCH_INIT_TIMEOUT_S,
    )
    match = PGBENCH_TPS_PATTERN.search(completed.stdout)
    if match is None:
        raise RuntimeError(f"no 'tps = ' line in pgbench's output:\n{completed.stdout}")
    for line in completed.stdout.splitlines():
        if line.startswith(("number of transactions actually processed", "latency", "tps")):
            print(f"pgbench: {line}")
    return float(match.group(1))


# --- Ledger server processes -------------------------------------------------------------------


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK_HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class LedgerProcess:
    """`python -m services.ledger` as a deployment runs it: configured by environment only."""

    def __init__(self, database_url: str, create_schema: bool, log_path: Path, log_level: str):
        self.port = _free_loopback_port()
        self.address = f"{LOOPBACK_HOST}:{self.port}"
        self.log_path = log_path
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("SESAME_")
        }
        environment.update(
            PYTHONUNBUFFERED="1",
            SESAME_LEDGER_HOST=LOOPBACK_HOST,
            SESAME_LEDGER_PORT=str(self.port),
            SESAME_LEDGER_DATABASE_URL=database_url,
            SESAME_LEDGER_CREATE_SCHEMA="true" if create_schema else "false",
            SESAME_LEDGER_LOG_LEVEL=log_level,
            # Measured in plaintext, as the pgbench baseline is.
            SESAME_LEDGER_PLAINTEXT="true",
        )
        # The log goes to a file: a pipe nobody reads would fill up and stall the server.
        with open(log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.ledger"],
                cwd=REPOSITORY_ROOT,
                env=environment,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    def wait_until_serving(self) -> None:
        """Waits until health reports SERVING on our port.

        The port is chosen here rather than left to the server (port 0), so that this does not
        depend on the start-up log line, which a log level above INFO leaves out; when the line
        is there, it must name our port.
        """
        deadline = time.monotonic() + LEDGER_STARTUP_TIMEOUT_S
        with grpc.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                self.require_running()
                logged_port = self._logged_port()
                if logged_port not in (None, self.port):
                    raise RuntimeError(f"the ledger bound port {logged_port}, not {self.port}")
                try:
                    reply = health.Check(
                        health_pb2.HealthCheckRequest(service=LEDGER_SERVICE), timeout=1.0
                    )
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(POLL_INTERVAL_S)
        raise RuntimeError(f"the ledger never reported SERVING:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(LEDGER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(LEDGER_STOP_TIMEOUT_S)

    def log_tail(self, lines: int = 12, line_length_max: int = 400) -> str:
        """The last lines of the log, each cut short: a traceback's line holds the whole SQL."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        tail = text.splitlines()[-lines:]
        return "\n".join(
            line if len(line) <= line_length_max else line[:line_length_max] + " [...]"
            for line in tail
        )

    def require_running(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"the ledger exited with code {self.process.returncode}:\n{self.log_tail()}"
            )

    def _logged_port(self) -> int | None:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if (
                isinstance(event, dict)
                and event.get("event") == "server_started"
                and isinstance(event.get("port"), int)
            ):
                return int(event["port"])
        return None


@contextmanager
def ledger_processes(
    database_url: str, count: int, log_directory: Path, log_level: str
) -> Iterator[list[LedgerProcess]]:
    """Starts `count` ledger processes on separate ports over one database; stops them after.

    The first creates the schema and is serving before the others start, so that they never
    race to create it. Separate ports rather than one shared port: the server turns
    SO_REUSEPORT off on purpose (grpc.so_reuseport = 0), so clients spread over the ports.
    """
    started: list[LedgerProcess] = []
    log_directory.mkdir(parents=True, exist_ok=True)
    try:
        for index in range(count):
            ledger = LedgerProcess(
                database_url,
                create_schema=index == 0,
                log_path=log_directory / f"ledger-{index}.log",
                log_level=log_level,
            )
            started.append(ledger)
            if index == 0:
                ledger.wait_until_serving()
        for ledger in started[1:]:
            ledger.wait_until_serving()
        yield started
    except Exception:
        # The logs live in a temporary directory: keep them, and show how they end. (Not on
        # Ctrl-C or SIGTERM: an interrupted run has nothing to explain.)
        FAILED_RUN_LOGS.mkdir(parents=True, exist_ok=True)
        for index, ledger in enumerate(started):
            exit_code = ledger.process.poll()
            state = "running" if exit_code is None else f"exited with code {exit_code}"
            kept = FAILED_RUN_LOGS / f"{log_directory.name}-{ledger.log_path.name}"
            shutil.copyfile(ledger.log_path, kept)
            print(f"-- ledger {index} ({state}), log kept in {kept.relative_to(REPOSITORY_ROOT)}")
            print(ledger.log_tail(), flush=True)
        raise
    finally:
        for ledger in started:
            ledger.stop()


def set_waiver_capacities(addresses: Sequence[str], user_count: int, request_tag: str) -> float:
    """Gives every benchmark user a large capacity, many calls in flight; returns calls/s."""
    channels = [grpc.insecure_channel(address) for address in addresses]
    stubs = [ledger_service_pb2_grpc.LedgerServiceStub(channel) for channel in channels]
    capacity = _money(WAIVER_CAPACITY_MINOR)
    pending: collections.deque[grpc.Future[Any]] = collections.deque()
    errors: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    deadline = started + CAPACITY_SETUP_TIMEOUT_S
    examples: list[str] = []

    def settle(future: grpc.Future[Any]) -> None:
        error = future.exception(timeout=max(0.0, deadline - time.monotonic()))
        if error is not None:
            errors[describe_error(error)] += 1
            if len(examples) < 3:
                details = error.details() if isinstance(error, grpc.Call) else str(error)
                examples.append(f"{describe_error(error)}: {details}")

    try:
        for number in range(user_count):
            if len(pending) >= CAPACITY_CALLS_IN_FLIGHT:
                settle(pending.popleft())
            request = ledger_service_pb2.SetWaiverCapacityRequest(
                request_id=f"{request_tag}-capacity-{number}",
                user_id=f"bench-u-{number}",
                capacity=capacity,
                reason="benchmark set-up",
            )
            stub = stubs[number % len(stubs)]
            pending.append(stub.SetWaiverCapacity.future(request, timeout=LEDGER_CALL_TIMEOUT_S))
        while pending:
            settle(pending.popleft())
    finally:
        for channel in channels:
            channel.close()
    if errors:
        raise RuntimeError(f"setting waiver capacities failed: {dict(errors)}; e.g. {examples}")
    return user_count / (time.monotonic() - started)


# --- The run -----------------------------------------------------------------------------------


@dataclass
class Plan:
    duration_s: int
    warmup_s: int
    pgbench_duration_s: int
    user_count: int
    ledger_processes: int
    client_processes: int
    statement_clients: int
    reports_per_batch: int
    log_level: str
    sqlite: bool


@dataclass
class LedgerFigures:
    operations: LoadResult
    statements: LoadResult
    # CPU seconds the ledger processes used during each load (NaN where /proc is missing): CPU
    # per operation divides out the machine's drift, which throughput alone does not.
    operations_ledger_cpu_s: float
    statements_ledger_cpu_s: float


def parse_plan(argv: Sequence[str] | None) -> tuple[Plan, PostgresServer]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=int, default=20, help="measured seconds per phase")
    parser.add_argument("--warmup-s", type=int, default=3, help="warm-up seconds per phase")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: 5 s phases and {QUICK_USER_COUNT} users (figures not comparable)",
    )
    parser.add_argument(
        "--ledger-processes",
        type=int,
        default=2,
        help="ledger processes on PostgreSQL, each on its own port (the server turns "
        "SO_REUSEPORT off), clients spread over them",
    )
    parser.add_argument("--client-processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--users", type=int, default=USER_COUNT)
    parser.add_argument(
        "--statement-clients",
        type=int,
        default=STATEMENT_CLIENTS,
        help="statement batches in flight",
    )
    parser.add_argument(
        "--reports-per-batch",
        type=int,
        default=REPORTS_PER_BATCH,
        help=f"1 to {REPORTS_PER_BATCH_MAX}, each report a new user with a credit line and "
        f"{STATEMENTS_PER_REPORT} statements",
    )
    parser.add_argument(
        "--ledger-log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="the ledger's log level; INFO (one line per RPC) is how it runs in production",
    )
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite phases")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("SESAME_BENCH_POSTGRES_URL", POSTGRES_SERVER_URL_DEFAULT),
        help="SQLAlchemy URL of the local server's admin database",
    )
    arguments = parser.parse_args(argv)
    duration_s, warmup_s = arguments.duration_s, arguments.warmup_s
    user_count = arguments.users
    if arguments.quick:
        duration_s, warmup_s = min(duration_s, 5), min(warmup_s, 1)
        user_count = min(user_count, QUICK_USER_COUNT)
    if duration_s < 1 or warmup_s < 0 or user_count < 1:
        parser.error("--duration-s and --users must be positive, --warmup-s not negative")
    if not 1 <= arguments.reports_per_batch <= REPORTS_PER_BATCH_MAX:
        parser.error(f"--reports-per-batch must be 1 to {REPORTS_PER_BATCH_MAX}")
    plan = Plan(
        duration_s=duration_s,
        warmup_s=warmup_s,
        pgbench_duration_s=duration_s,
        user_count=user_count,
        ledger_processes=max(1, arguments.ledger_processes),
        client_processes=max(1, arguments.client_processes),
        statement_clients=max(1, arguments.statement_clients),
        reports_per_batch=arguments.reports_per_batch,
        log_level=arguments.ledger_log_level,
        sqlite=not arguments.no_sqlite,
    )
    return plan, PostgresServer(arguments.postgres_url)


def processes_cpu_s(pids: Sequence[int]) -> float:
    """CPU seconds (user and system) the processes have used so far; NaN without /proc."""
    clock_ticks_per_s = os.sysconf("SC_CLK_TCK")
    total_s = 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return math.nan
        # The command name, in parentheses, may hold spaces: count fields after it.
        fields = stat.rsplit(")", 1)[1].split()
        total_s += (int(fields[11]) + int(fields[12])) / clock_ticks_per_s
    return total_s


@contextmanager
def cpu_used(pids: Sequence[int], into: list[float]) -> Iterator[None]:
    """Appends to `into` the CPU seconds the processes used inside the block."""
    cpu_started_s = processes_cpu_s(pids)
    yield
    into.append(processes_cpu_s(pids) - cpu_started_s)


@dataclass(frozen=True)
class LedgerUnderTest:
    """Ledger processes over one database, and what tells their requests apart."""

    name: str
    label: str
    result_prefix: str
    ledgers: list[LedgerProcess]
    request_tag: str

    @property
    def addresses(self) -> list[str]:
        return [ledger.address for ledger in self.ledgers]

    @property
    def pids(self) -> list[int]:
        return [ledger.process.pid for ledger in self.ledgers]


def set_up_capacities(targets: Sequence[LedgerUnderTest], user_count: int) -> None:
    """Sets every user's capacity on every ledger under test, all databases at once.

    One call per user is the slowest step of the run, and it is set-up, not measurement: doing
    the databases side by side keeps the whole run within a few minutes.
    """
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        futures = {
            target.name: pool.submit(
                set_waiver_capacities, target.addresses, user_count, target.request_tag
            )
            for target in targets
        }
        rates = {name: future.result() for name, future in futures.items()}
    described = ", ".join(f"{name} {rate:.0f} calls/s" for name, rate in rates.items())
    print(f"  done in {time.monotonic() - started:.0f}s ({described}, side by side)", flush=True)


def measure_ledger(target: LedgerUnderTest, plan: Plan) -> LedgerFigures:
    ledger_cpu_s: list[float] = []
    with cpu_used(target.pids, ledger_cpu_s):
        operations = run_load(
            target.addresses,
            "tests.benchmarks.bench_ledger:place_and_release",
            concurrency=LEDGER_CONCURRENCY,
            processes=plan.client_processes,
            duration_s=plan.duration_s,
            warmup_s=plan.warmup_s,
            arguments={"user_count": plan.user_count, "request_tag": f"{target.request_tag}-hold"},
            call_timeout_s=LEDGER_CALL_TIMEOUT_S,
        )
    print("  place + release pairs:\n" + operations.summary())
    print(f"  ledger processes used {ledger_cpu_s[-1] / operations.load_wall_s:.2f} cores")
    with cpu_used(target.pids, ledger_cpu_s):
        statements = run_load(
            target.addresses,
            "tests.benchmarks.bench_ledger:record_statements",
            concurrency=plan.statement_clients,
            processes=min(plan.client_processes, plan.statement_clients),
            duration_s=plan.duration_s,
            warmup_s=plan.warmup_s,
            arguments={
                "reports_per_batch": plan.reports_per_batch,
                "request_tag": target.request_tag,
            },
            call_timeout_s=STATEMENT_CALL_TIMEOUT_S,
        )
    print("  partner statement batches:\n" + statements.summary())
    print(f"  ledger processes used {ledger_cpu_s[-1] / statements.load_wall_s:.2f} cores")
    for ledger in target.ledgers:
        ledger.require_running()
    operations_cpu_s, statements_cpu_s = ledger_cpu_s
    return LedgerFigures(operations, statements, operations_cpu_s, statements_cpu_s)


def single_operation_latencies_s(result: LoadResult) -> list[float]:
    """Each PlaceHold and each ReleaseHold is one ledger operation."""
    return [latency for values in result.step_latencies_s.values() for latency in values]


def ledger_results(prefix: str, figures: LedgerFigures, pgbench_tps: float) -> dict[str, float]:
    operations, statements = figures.operations, figures.statements
    single_s = single_operation_latencies_s(operations)
    return {
        f"{prefix}ledger_ops_per_s": operations.units_per_s,
        f"{prefix}ledger_pairs_per_s": operations.operations_per_s,
        f"{prefix}ledger_ops_vs_pgbench": operations.units_per_s / pgbench_tps,
        f"{prefix}ledger_p50_ms": percentile(single_s, 0.5) * 1000.0,
        f"{prefix}ledger_p99_ms": percentile(single_s, 0.99) * 1000.0,
        f"{prefix}ledger_place_hold_p99_ms": operations.step_latency_ms("PlaceHold", 0.99),
        f"{prefix}ledger_release_hold_p99_ms": operations.step_latency_ms("ReleaseHold", 0.99),
        f"{prefix}ledger_errors": operations.errors,
        f"{prefix}ledger_cpu_ms_per_op": _cpu_ms_per_unit(
            figures.operations_ledger_cpu_s, operations
        ),
        f"{prefix}statements_per_s": statements.units_per_s,
        f"{prefix}statements_vs_pgbench": statements.units_per_s / pgbench_tps,
        f"{prefix}statement_batch_p50_ms": statements.latency_ms(0.5),
        f"{prefix}statement_batch_p99_ms": statements.latency_ms(0.99),
        f"{prefix}statements_errors": statements.errors,
        f"{prefix}statements_cpu_ms_per_entry": _cpu_ms_per_unit(
            figures.statements_ledger_cpu_s, statements
        ),
    }


def _cpu_ms_per_unit(cpu_s: float, result: LoadResult) -> float:
    """CPU over the whole load (warm-up included) per unit done at the measured rate."""
    units_over_load = result.units_per_s * result.load_wall_s
    return cpu_s / units_over_load * 1000.0 if units_over_load > 0 else math.nan


def format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"


def run(plan: Plan, server: PostgresServer) -> tuple[dict[str, float], bool]:
    if importlib.util.find_spec("services.ledger.app") is None:
        raise SystemExit("services.ledger has no __main__ yet: nothing to benchmark")
    tag = secrets.token_hex(4)
    pgbench_database, ledger_database = f"sesame_bench_{tag}_pgbench", f"sesame_bench_{tag}_ledger"
    results: dict[str, float] = {}
    valid = True
    with ExitStack() as stack:
        work_directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        stack.enter_context(temporary_databases(server, [pgbench_database, ledger_database]))

        print(f"== baseline: pgbench TPC-B-like, {PGBENCH_CLIENTS} clients, {plan.duration_s}s")
        initialise_pgbench(server, pgbench_database)
        pgbench_before_tps = run_pgbench(server, pgbench_database, plan.pgbench_duration_s)

        targets = [
            LedgerUnderTest(
                "PostgreSQL",
                f"PostgreSQL ({plan.ledger_processes} ledger processes on separate ports)",
                "",
                stack.enter_context(
                    ledger_processes(
                        server.database_url(ledger_database),
                        plan.ledger_processes,
                        work_directory / "postgresql",
                        plan.log_level,
                    )
                ),
                f"bench-{tag}-pg",
            )
        ]
        if plan.sqlite:
            sqlite_url = f"sqlite:///{work_directory / 'ledger.db'}"
            targets.append(
                LedgerUnderTest(
                    "SQLite",
                    "SQLite (1 ledger process: SQLite has one writer at a time)",
                    "sqlite_",
                    stack.enter_context(
                        ledger_processes(sqlite_url, 1, work_directory / "sqlite", plan.log_level)
                    ),
                    f"bench-{tag}-sqlite",
                )
            )
        print(f"== set-up: waiver capacity for {plan.user_count} users on each ledger")
        set_up_capacities(targets, plan.user_count)
        measured = []
        for target in targets:
            print(f"== ledger on {target.label}")
            measured.append((target, measure_ledger(target, plan)))
            if target is targets[0]:
                # The machine drifts: a second baseline right after the PostgreSQL ledger
                # brackets it, and the ratios use the mean of the two.
                print("== baseline again: pgbench, as before")
                pgbench_after_tps = run_pgbench(server, pgbench_database, plan.pgbench_duration_s)
        pgbench_tps = (pgbench_before_tps + pgbench_after_tps) / 2
        results["pgbench_tps"] = pgbench_tps
        results["pgbench_before_tps"] = pgbench_before_tps
        results["pgbench_after_tps"] = pgbench_after_tps
        for target, figures in measured:
            results.update(ledger_results(target.result_prefix, figures, pgbench_tps))
            valid = valid and figures.operations.valid and figures.statements.valid
    results["ledger_processes"] = plan.ledger_processes
    results["client_processes"] = plan.client_processes
    results["ledger_concurrency"] = LEDGER_CONCURRENCY
    results["statement_clients"] = plan.statement_clients
    results["statement_entries_per_batch"] = plan.reports_per_batch * ENTRIES_PER_REPORT
    results["users"] = plan.user_count
    return results, valid


def _stop_on_sigterm(signal_number: int, _frame: FrameType | None) -> None:
    # SystemExit unwinds through every `finally`, so the databases are dropped and the ledger
    # processes stopped even when the run is cut short.
    raise SystemExit(128 + signal_number)


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    plan, server = parse_plan(argv)
    started = time.monotonic()
    results, valid = run(plan, server)
    print(f"== done in {time.monotonic() - started:.0f}s")
    for name, target in (
        ("ledger_ops_vs_pgbench", TARGET_LEDGER_OPS_VS_PGBENCH),
        ("statements_vs_pgbench", TARGET_STATEMENTS_VS_PGBENCH),
    ):
        verdict = "met" if results[name] >= target else "MISSED"
        print(f"target {name} >= {target}: {verdict}")
    if not valid:
        print("INVALID: some operations failed; the figures below do not count")
    for name, value in results.items():
        print(f"RESULT {name} {format_value(value)}")
    return 0 if valid else 1


if __name__ == "__main__":
    sys.exit(main())
