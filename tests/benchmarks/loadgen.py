"""A gRPC load generator: N worker processes keeping up to `concurrency` calls in flight.

Each worker process runs a small asyncio loop (grpc.aio) with its own channel per address and
its share of `concurrency` slots; each slot issues one operation at a time, as fast as the server
answers (closed loop) or on a schedule (open loop, below). An *operation* is whatever an
operation factory builds: one RPC or several (a hold placed then released). Worker processes,
not threads, so that the client's own Python never becomes the bottleneck being measured on a
many-core machine; asyncio, not a thread per slot, because on a small machine the client shares
the cores with the server and must stay cheap.

The operation factory is named as "module:function" so that spawned processes can import it
(they are given the repository on their path, whoever started the run: see `run_load`)::

    async def place_and_release(context: OperationContext) -> Operation:
        stub = LedgerServiceStub(context.channel)
        async def operation() -> OperationOutcome:
            ...
            return OperationOutcome(units=2, step_latencies_s={"PlaceHold": ..., ...})
        return operation

    result = run_load(
        ["127.0.0.1:50051"],
        "my_benchmark:place_and_release",
        concurrency=16,
        processes=2,
        duration_s=20,
        warmup_s=3,
    )
    print(result.operations_per_s, result.errors, result.latency_ms(0.99))

The factory runs once per slot, before timing starts, and may make RPCs of its own. An operation
that raises counts as an error (a gRPC error by its status code and ErrorInfo reason); an
operation returns an `OperationOutcome` to say how many units of work it did (entries written,
ledger operations) and how long each of its steps took, or None for one unit and no steps.

Operations that complete inside the measured window (after the warm-up) are counted, wherever
they started, so throughput is completions in the window divided by its length: unbiased in a
steady closed loop even when an operation takes seconds (a large batch). Latencies are those
of the same operations. Errors are counted over the whole run, warm-up included: a result with
any error is not valid.

Closed loop (the default) measures the most a server does: each slot starts its next operation
as soon as the last one ends. Open loop (`rate_per_s`) measures latency at a given load: the
rate is split evenly over the slots, each slot's operations are scheduled at fixed times (slot
i of n starting i/n of a period after the others), and an operation's latency runs from its
scheduled time, not from when the slot got round to it. A server that falls behind therefore
shows its queueing delay in the latencies instead of quietly slowing the client down (no
coordinated omission); `operations_per_s` is then the rate achieved, `offered_per_s` the rate
asked for. `concurrency` still bounds the calls in flight, so give it room: well above the
rate times the expected latency.

Slots of a process share one channel (one connection) per address, or with `channel_per_slot`
each has its own: several worker processes behind one port (SO_REUSEPORT) are given work per
connection, so a client needs many connections to reach them all.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import multiprocessing
import queue
import random
import sys
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

# Every loop is bounded in count as well as in time: a slot never runs more operations than this.
OPERATIONS_PER_SLOT_MAX = 10_000_000
# How long worker processes may take to import, connect and build their operations.
WORKER_READY_TIMEOUT_S = 60.0
# How long after the measured window worker processes may take to report.
WORKER_REPORT_TIMEOUT_S = 60.0
# The workers all start this long after the last one is ready, so that none starts early.
START_MARGIN_S = 0.2
# Error descriptions kept per worker, to show what went wrong without flooding the report.
ERROR_EXAMPLES_MAX = 5
CHANNEL_READY_TIMEOUT_S = 15.0
# Where the `tests` package is: the directory spawned workers must import it from.
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class OperationOutcome:
    """What one operation did: units of work (its own measure) and the time of each step."""

    units: int = 1
    step_latencies_s: Mapping[str, float] = field(default_factory=dict)


Operation = Callable[[], Awaitable[OperationOutcome | None]]


@dataclass(frozen=True)
class OperationContext:
    """What an operation factory gets: a channel, who it is, a seeded random source, arguments."""

    channel: grpc.aio.Channel
    address: str
    process_index: int
    slot_index: int  # unique across all processes, 0 to concurrency - 1
    random: random.Random
    arguments: Mapping[str, Any]
    call_timeout_s: float


@dataclass
class LoadResult:
    """What a run measured, merged over every worker process."""

    operations: int
    units: int
    errors: int
    error_kinds: dict[str, int]
    error_examples: list[str]
    duration_s: float
    concurrency: int
    processes: int
    addresses: list[str]
    latencies_s: list[float]
    step_latencies_s: dict[str, list[float]]
    # CPU the worker processes used while issuing load (warm-up included) and over how long:
    # the client's own cost, which on a small machine competes with the server's.
    client_cpu_s: float
    load_wall_s: float
    # The rate an open-loop run asked for; None for a closed loop.
    offered_per_s: float | None = None

    @property
    def client_cores(self) -> float:
        return self.client_cpu_s / self.load_wall_s if self.load_wall_s > 0 else math.nan

    @property
    def operations_per_s(self) -> float:
        return self.operations / self.duration_s

    @property
    def units_per_s(self) -> float:
        return self.units / self.duration_s

    @property
    def valid(self) -> bool:
        """A result counts only when every operation succeeded and some were measured."""
        return self.errors == 0 and self.operations > 0

    def latency_ms(self, quantile: float) -> float:
        return percentile(self.latencies_s, quantile) * 1000.0

    def step_latency_ms(self, step: str, quantile: float) -> float:
        return percentile(self.step_latencies_s.get(step, []), quantile) * 1000.0

    def summary(self) -> str:
        offered = "" if self.offered_per_s is None else f" offered={self.offered_per_s:.1f}/s"
        lines = [
            f"  processes={self.processes} concurrency={self.concurrency} "
            f"addresses={len(self.addresses)} measured={self.duration_s:.1f}s{offered}",
            f"  operations={self.operations} ({self.operations_per_s:.1f}/s) "
            f"units={self.units} ({self.units_per_s:.1f}/s) errors={self.errors}",
            f"  operation latency p50={self.latency_ms(0.5):.2f}ms "
            f"p99={self.latency_ms(0.99):.2f}ms",
            f"  client processes used {self.client_cores:.2f} cores",
        ]
        for step in sorted(self.step_latencies_s):
            lines.append(
                f"  step {step}: p50={self.step_latency_ms(step, 0.5):.2f}ms "
                f"p99={self.step_latency_ms(step, 0.99):.2f}ms"
            )
        for kind, count in sorted(self.error_kinds.items(), key=lambda item: -item[1]):
            lines.append(f"  error {kind}: {count}")
        lines.extend(f"  error example: {example}" for example in self.error_examples)
        return "\n".join(lines)


def percentile(values: Sequence[float], quantile: float) -> float:
    """The nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, math.ceil(quantile * len(ordered)) - 1))
    return ordered[rank]


def describe_error(error: BaseException) -> str:
    """A short, stable label: the gRPC status code and ErrorInfo reason, or the exception type."""
    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        code = error.code()
        code_name = code.name if code is not None else "UNKNOWN"
        reason = _error_info_reason(error)
        return f"{code_name}/{reason}" if reason else code_name
    return type(error).__name__


def _error_info_reason(error: grpc.RpcError) -> str:
    try:
        from google.rpc import error_details_pb2
        from grpc_status import rpc_status

        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except Exception:  # a malformed status is reported by its code alone
        return ""
    if status is None:
        return ""
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


def load_factory(name: str) -> Callable[[OperationContext], Awaitable[Operation]]:
    """Imports "package.module:function"."""
    module_name, separator, function_name = name.partition(":")
    if not separator or not module_name or not function_name:
        raise ValueError(f"operation factory must be 'module:function', got {name!r}")
    factory: Callable[[OperationContext], Awaitable[Operation]] = getattr(
        importlib.import_module(module_name), function_name
    )
    return factory


@dataclass(frozen=True)
class _WorkerPlan:
    process_index: int
    slot_indices: list[int]
    addresses: list[str]
    operation_factory: str
    arguments: dict[str, Any]
    seed: int
    call_timeout_s: float
    channel_per_slot: bool
    # Open loop: each slot's period, and its first operation's offset per slot index.
    slot_period_s: float | None
    slot_phase_s: float
    # (certificate, key, CA) files for mutual TLS; None for plaintext.
    tls_files: tuple[str, str, str] | None = None


@dataclass
class _WorkerReport:
    process_index: int
    operations: int = 0
    units: int = 0
    errors: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    error_examples: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    step_latencies_s: dict[str, list[float]] = field(default_factory=dict)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    failure: str = ""  # set when the worker could not run at all


def run_load(
    addresses: str | Sequence[str],
    operation_factory: str,
    *,
    concurrency: int,
    processes: int,
    duration_s: float,
    warmup_s: float,
    arguments: Mapping[str, Any] | None = None,
    call_timeout_s: float = 10.0,
    seed: int | None = None,
    rate_per_s: float | None = None,
    channel_per_slot: bool = False,
    tls_files: tuple[str, str, str] | None = None,
) -> LoadResult:
    """Runs `concurrency` slots over `processes` spawned worker processes.

    Closed loop, or open loop at `rate_per_s` operations per second in all (see the module's
    docstring). Slots are spread over the processes as evenly as possible and over the
    addresses round robin (slot i talks to addresses[i % len(addresses)]), so several server
    processes on separate ports share the load; `channel_per_slot` gives every slot a
    connection of its own. Raises RuntimeError when a worker cannot start or report.
    """
    address_list = [addresses] if isinstance(addresses, str) else list(addresses)
    if not address_list:
        raise ValueError("at least one address is needed")
    if concurrency < 1 or processes < 1:
        raise ValueError("concurrency and processes must be at least 1")
    if duration_s <= 0 or warmup_s < 0:
        raise ValueError("duration_s must be positive and warmup_s not negative")
    if rate_per_s is not None and rate_per_s <= 0:
        raise ValueError("rate_per_s must be positive")
    slot_period_s = concurrency / rate_per_s if rate_per_s is not None else None
    processes = min(processes, concurrency)
    load_factory(operation_factory)  # fail here, not in every worker, on a bad name
    base_seed = seed if seed is not None else random.randrange(2**32)
    plans = [
        _WorkerPlan(
            process_index=index,
            slot_indices=list(range(index, concurrency, processes)),
            addresses=address_list,
            operation_factory=operation_factory,
            arguments=dict(arguments or {}),
            seed=base_seed + index,
            call_timeout_s=call_timeout_s,
            channel_per_slot=channel_per_slot,
            slot_period_s=slot_period_s,
            slot_phase_s=(slot_period_s or 0.0) / concurrency,
            tls_files=tls_files,
        )
        for index in range(processes)
    ]
    context = multiprocessing.get_context("spawn")
    ready: multiprocessing.Queue[int] = context.Queue()
    reports: multiprocessing.Queue[_WorkerReport] = context.Queue()
    start_at = context.Value("d", 0.0)
    go = context.Event()
    workers = [
        context.Process(
            target=_worker_main,
            args=(plan, warmup_s, duration_s, ready, reports, start_at, go),
            name=f"loadgen-{plan.process_index}",
            daemon=True,
        )
        for plan in plans
    ]
    with _repository_importable_in_workers():
        for worker in workers:
            worker.start()
    try:
        collected = _coordinate(workers, ready, reports, start_at, go, warmup_s, duration_s)
    finally:
        for worker in workers:
            worker.join(timeout=5.0)
            if worker.is_alive():
                worker.terminate()
                worker.join(timeout=5.0)
    result = _merge(collected, duration_s, concurrency, processes, address_list)
    result.offered_per_s = rate_per_s
    return result


@contextmanager
def _repository_importable_in_workers() -> Iterator[None]:
    """Puts the repository on the path the workers start with, while they are started.

    A spawned worker imports this module and the operation factory by name, and begins with
    the sys.path of the process that started it (multiprocessing hands it over). That path
    holds the repository when it was started as `python -m tests.…` from the repository, but
    not under pytest's importlib mode, which imports `tests` without touching sys.path: a
    worker would then fail to import `tests` unless something else had put the repository
    there first.
    """
    root = str(REPOSITORY_ROOT)
    if root in sys.path:
        yield
        return
    sys.path.insert(0, root)
    try:
        yield
    finally:
        sys.path.remove(root)


def _coordinate(
    workers: Sequence[multiprocessing.process.BaseProcess],
    ready: multiprocessing.Queue[int],
    reports: multiprocessing.Queue[_WorkerReport],
    start_at: Any,
    go: Any,
    warmup_s: float,
    duration_s: float,
) -> list[_WorkerReport]:
    collected: list[_WorkerReport] = []
    try:
        _wait_until_ready(workers, ready, reports, collected)
        start_at.value = time.time() + START_MARGIN_S
    finally:
        # Releases every waiting worker; with start_at still 0 they stop without running.
        go.set()
    report_deadline = time.monotonic() + START_MARGIN_S + warmup_s + duration_s
    report_deadline += WORKER_REPORT_TIMEOUT_S
    while len(collected) < len(workers):
        remaining_s = report_deadline - time.monotonic()
        if remaining_s <= 0:
            raise RuntimeError("load generator workers did not report in time")
        try:
            collected.append(reports.get(timeout=min(remaining_s, 1.0)))
        except queue.Empty:
            if all(not worker.is_alive() for worker in workers) and reports.empty():
                raise RuntimeError("load generator workers exited without reporting") from None
    failures = [report.failure for report in collected if report.failure]
    if failures:
        raise RuntimeError("load generator worker failed:\n" + failures[0])
    return collected


def _wait_until_ready(
    workers: Sequence[multiprocessing.process.BaseProcess],
    ready: multiprocessing.Queue[int],
    reports: multiprocessing.Queue[_WorkerReport],
    collected: list[_WorkerReport],
) -> None:
    ready_deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
    ready_count = 0
    while ready_count < len(workers):
        # A worker that fails to start reports its failure instead of becoming ready.
        _drain_reports(reports, collected)
        if collected:
            raise RuntimeError("load generator worker failed:\n" + collected[0].failure)
        if time.monotonic() > ready_deadline:
            raise RuntimeError("load generator workers did not become ready in time")
        if any(worker.exitcode is not None for worker in workers):
            _drain_reports(reports, collected)
            if not collected:
                raise RuntimeError("a load generator worker exited before it was ready")
            continue
        try:
            ready.get(timeout=0.5)
            ready_count += 1
        except queue.Empty:
            pass


def _drain_reports(
    reports: multiprocessing.Queue[_WorkerReport], collected: list[_WorkerReport]
) -> None:
    while True:
        try:
            collected.append(reports.get_nowait())
        except queue.Empty:
            return


def _merge(
    reports: list[_WorkerReport],
    duration_s: float,
    concurrency: int,
    processes: int,
    addresses: list[str],
) -> LoadResult:
    error_kinds: Counter[str] = Counter()
    step_latencies_s: dict[str, list[float]] = {}
    latencies_s: list[float] = []
    examples: list[str] = []
    for report in reports:
        error_kinds.update(report.error_kinds)
        latencies_s.extend(report.latencies_s)
        examples.extend(report.error_examples)
        for step, values in report.step_latencies_s.items():
            step_latencies_s.setdefault(step, []).extend(values)
    return LoadResult(
        operations=sum(report.operations for report in reports),
        units=sum(report.units for report in reports),
        errors=sum(report.errors for report in reports),
        error_kinds=dict(error_kinds),
        error_examples=examples[:ERROR_EXAMPLES_MAX],
        duration_s=duration_s,
        concurrency=concurrency,
        processes=processes,
        addresses=addresses,
        latencies_s=latencies_s,
        step_latencies_s=step_latencies_s,
        client_cpu_s=sum(report.cpu_s for report in reports),
        load_wall_s=max((report.wall_s for report in reports), default=0.0),
    )


def _worker_main(
    plan: _WorkerPlan,
    warmup_s: float,
    duration_s: float,
    ready: multiprocessing.Queue[int],
    reports: multiprocessing.Queue[_WorkerReport],
    start_at: Any,
    go: Any,
) -> None:
    try:
        report = asyncio.run(_run_worker(plan, warmup_s, duration_s, ready, start_at, go))
    except BaseException:  # the parent must hear about any failure, or it waits in vain
        report = _WorkerReport(plan.process_index, failure=traceback.format_exc())
    reports.put(report)


async def _run_worker(
    plan: _WorkerPlan,
    warmup_s: float,
    duration_s: float,
    ready: multiprocessing.Queue[int],
    start_at: Any,
    go: Any,
) -> _WorkerReport:
    factory = load_factory(plan.operation_factory)
    channels: dict[str, grpc.aio.Channel] = {}
    try:
        operations: list[Operation] = []
        for slot_index in plan.slot_indices:
            address = plan.addresses[slot_index % len(plan.addresses)]
            channel_key = f"{address}#{slot_index}" if plan.channel_per_slot else address
            if channel_key not in channels:
                channels[channel_key] = await _open_channel(
                    address, plan.channel_per_slot, plan.tls_files
                )
            context = OperationContext(
                channel=channels[channel_key],
                address=address,
                process_index=plan.process_index,
                slot_index=slot_index,
                random=random.Random(plan.seed * 1_000_003 + slot_index),
                arguments=plan.arguments,
                call_timeout_s=plan.call_timeout_s,
            )
            operations.append(await factory(context))
        ready.put(plan.process_index)
        # Blocking here is fine: nothing else runs on this loop until the load starts.
        if not go.wait(timeout=WORKER_READY_TIMEOUT_S):
            raise RuntimeError("the start signal never came")
        if start_at.value == 0.0:
            raise RuntimeError("the run was called off")
        measure_from = start_at.value + warmup_s
        measure_until = measure_from + duration_s
        report = _WorkerReport(plan.process_index)
        await asyncio.sleep(max(0.0, start_at.value - time.time()))
        cpu_started_s, wall_started_s = time.process_time(), time.monotonic()
        if plan.slot_period_s is None:
            slots = [
                _run_slot(operation, measure_from, measure_until, report)
                for operation in operations
            ]
        else:
            slots = [
                _run_paced_slot(
                    operation,
                    first_at=start_at.value + slot_index * plan.slot_phase_s,
                    period_s=plan.slot_period_s,
                    measure_from=measure_from,
                    measure_until=measure_until,
                    report=report,
                )
                for slot_index, operation in zip(plan.slot_indices, operations, strict=True)
            ]
        await asyncio.gather(*slots)
        report.cpu_s = time.process_time() - cpu_started_s
        report.wall_s = time.monotonic() - wall_started_s
        return report
    finally:
        for channel in channels.values():
            await channel.close()


async def _open_channel(
    address: str, own_connection: bool, tls_files: tuple[str, str, str] | None
) -> grpc.aio.Channel:
    # Channels to one address share their connection through gRPC's global subchannel pool
    # unless each keeps a pool of its own.
    options = [("grpc.use_local_subchannel_pool", 1)] if own_connection else []
    if tls_files is None:
        channel = grpc.aio.insecure_channel(address, options=options)
    else:
        certificate, key, ca = (Path(name).read_bytes() for name in tls_files)
        credentials = grpc.ssl_channel_credentials(ca, key, certificate)
        channel = grpc.aio.secure_channel(address, credentials, options=options)
    await asyncio.wait_for(channel.channel_ready(), timeout=CHANNEL_READY_TIMEOUT_S)
    return channel


async def _run_slot(
    operation: Operation, measure_from: float, measure_until: float, report: _WorkerReport
) -> None:
    """Closed loop: the next operation as soon as the last one ends."""
    for _ in range(OPERATIONS_PER_SLOT_MAX):
        started_at = time.time()
        if started_at >= measure_until:
            return
        started = time.perf_counter()
        try:
            outcome = await operation()
        except Exception as error:
            # Errors count wherever they happen, warm-up included: any error voids the result.
            _record_error(report, error)
            continue
        elapsed_s = time.perf_counter() - started
        if measure_from <= time.time() <= measure_until:
            _record_outcome(report, outcome, elapsed_s)


async def _run_paced_slot(
    operation: Operation,
    *,
    first_at: float,
    period_s: float,
    measure_from: float,
    measure_until: float,
    report: _WorkerReport,
) -> None:
    """Open loop: operation k is due at first_at + k * period_s (wall clock) and its latency
    runs from then, however late the slot starts it."""
    # Scheduled times are kept on the monotonic clock, which latencies are measured on.
    wall_to_perf_s = time.perf_counter() - time.time()
    for index in range(OPERATIONS_PER_SLOT_MAX):
        due_at = first_at + index * period_s
        if due_at >= measure_until:
            return
        due = due_at + wall_to_perf_s
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        try:
            outcome = await operation()
        except Exception as error:
            _record_error(report, error)
            continue
        elapsed_s = time.perf_counter() - due
        if measure_from <= time.time() <= measure_until:
            _record_outcome(report, outcome, elapsed_s)


def _record_outcome(
    report: _WorkerReport, outcome: OperationOutcome | None, latency_s: float
) -> None:
    report.operations += 1
    report.latencies_s.append(latency_s)
    if outcome is None:
        report.units += 1
        return
    report.units += outcome.units
    for step, step_latency_s in outcome.step_latencies_s.items():
        report.step_latencies_s.setdefault(step, []).append(step_latency_s)


def _record_error(report: _WorkerReport, error: Exception) -> None:
    report.errors += 1
    kind = describe_error(error)
    report.error_kinds[kind] += 1
    if len(report.error_examples) < ERROR_EXAMPLES_MAX:
        details = error.details() if isinstance(error, grpc.RpcError) else str(error)
        report.error_examples.append(f"{kind}: {details}")
