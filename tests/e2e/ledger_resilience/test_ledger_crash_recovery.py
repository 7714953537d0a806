"""The ledger killed with SIGKILL in the middle of a load, twice, and restarted on the same
database: every acknowledged operation is applied exactly once. On SQLite and PostgreSQL.

Client threads each work through a fixed list of operations with fixed request ids (a cycle of
capacity change, placements, a placement refused for capacity, a capture with an obligation, a
release, a repeated capture refused, payments, a payment refused, a closing, an obligation on a
user all threads share, and partner statements, some re-sent unchanged). A killer thread
SIGKILLs the ledger four times, spread over the load, and restarts it on the same database and
port. Clients retry UNAVAILABLE and DEADLINE_EXCEEDED with the same request id until every
operation is acknowledged; some first attempts get a deadline too short for the write, so the
ledger commits after the client gave up and the retry must find the stored answer.

Then: every operation got the answer the model predicts (success, or the business refusal it
was meant to get); the journal holds, per request id, exactly the entries that operation writes
(never twice, never for a refusal) and nothing else; every chain verifies; and every account
summary and credit history equals what the model of the acknowledged operations predicts.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from sesame.ledger.v1 import ledger_service_pb2 as pb
from sesame.type.v1 import money_pb2

from services.common.grpc_errors import error_details

pytestmark = pytest.mark.slow

THREADS = 6
CYCLES = 8
SHARED_USER = "crash-shared"
CURRENCY = "CNY"
STATEMENT_CURRENCY = "TWD"
CREDIT_LINE = 10_000
SHARED_OBLIGATION = 70
CALL_TIMEOUT_S = 5.0
# Some first attempts get a deadline shorter than a write takes under load: the client gives up
# while the ledger goes on and commits, and the retry must find the stored answer.
IMPATIENT_TIMEOUTS_S = (0.02, 0.05)
KILLS = 4
LOAD_DEADLINE_S = 240.0
# Fixed business times, so that a retried request is byte for byte the original.
DUE_AT = timestamp_pb2.Timestamp(seconds=1_900_000_000)
PAID_AT = timestamp_pb2.Timestamp(seconds=1_750_000_000)
RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def money(amount_minor: int, currency: str = CURRENCY) -> money_pb2.Money:
    return money_pb2.Money(currency_code=currency, amount_minor=amount_minor)


@dataclass
class Operation:
    request_id: str
    method: str
    build: Callable[[dict[str, str]], Any]
    # None: must succeed; otherwise the FAILED_PRECONDITION reason it must get.
    refusal: str | None = None
    # Journal entries it writes, per user, when it succeeds.
    entries: dict[str, int] = field(default_factory=dict)
    remember: Callable[[dict[str, str], Any], None] | None = None
    expected_result: tuple[int, int, bool] | None = None


def _statement(period_month: int, balance: int) -> pb.Statement:
    return pb.Statement(
        period=pb.StatementPeriod(year=2024, month=period_month),
        balance=money(balance, STATEMENT_CURRENCY),
        amount_paid=money(balance // 2, STATEMENT_CURRENCY),
        repayment_status=pb.REPAYMENT_STATUS_REVOLVING,
    )


def _statement_balance(month: int) -> int:
    return 1_000 * month


def operations_of(thread: int) -> list[Operation]:
    """The thread's fixed operations; ids of holds and obligations come from earlier answers."""
    user = f"crash-user-{thread}"
    operations: list[Operation] = []
    for cycle in range(CYCLES):
        prefix = f"t{thread}-c{cycle}"

        def place(name: str, amount: int, *, prefix: str = prefix) -> Callable[..., Any]:
            def build(_: dict[str, str]) -> pb.PlaceHoldRequest:
                return pb.PlaceHoldRequest(
                    request_id=f"{prefix}-{name}",
                    user_id=user,
                    amount=money(amount),
                    expires_in=duration_pb2.Duration(seconds=86_400),
                    reference=f"{prefix}-{name}",
                )

            return build

        def remember_hold(key: str) -> Callable[[dict[str, str], Any], None]:
            def remember(ids: dict[str, str], response: Any) -> None:
                ids[key] = response.hold.hold_id

            return remember

        capture_a = pb.CaptureHoldRequest(request_id=f"{prefix}-capture-a", amount=money(250))
        capture_a.obligation.due_time.CopyFrom(DUE_AT)
        capture_a.obligation.purpose = "repair"

        def with_hold(request: Any, key: str) -> Callable[[dict[str, str]], Any]:
            def build(ids: dict[str, str]) -> Any:
                built = type(request)()
                built.CopyFrom(request)
                built.hold_id = ids[key]
                return built

            return build

        def with_obligation(request: Any, key: str) -> Callable[[dict[str, str]], Any]:
            def build(ids: dict[str, str]) -> Any:
                built = type(request)()
                built.CopyFrom(request)
                built.obligation_id = ids[key]
                return built

            return build

        def remember_obligation(key: str) -> Callable[[dict[str, str], Any], None]:
            def remember(ids: dict[str, str], response: Any) -> None:
                ids[key] = response.obligation.obligation_id

            return remember

        def payment(name: str, amount: int, *, prefix: str = prefix) -> Any:
            return pb.RecordPaymentRequest(
                request_id=f"{prefix}-{name}", amount=money(amount), paid_time=PAID_AT
            )

        shared_obligation = pb.CreateObligationRequest(
            request_id=f"{prefix}-shared-obligation",
            user_id=SHARED_USER,
            amount_due=money(SHARED_OBLIGATION),
            due_time=DUE_AT,
            purpose="shared",
        )
        # Cycle 0 reports the credit line and month 1; later cycles re-send the previous month
        # unchanged (and the credit line unchanged) with one new month.
        report = pb.PartnerReport(
            user_id=user,
            partner_id=f"bank-{thread}",
            statements=[_statement(cycle + 1, _statement_balance(cycle + 1))],
        )
        report.credit_line.CopyFrom(money(CREDIT_LINE, STATEMENT_CURRENCY))
        if cycle > 0:
            report.statements.append(_statement(cycle, _statement_balance(cycle)))
        statements = pb.RecordPartnerStatementsRequest(
            request_id=f"{prefix}-statements", reports=[report]
        )
        capacity = pb.SetWaiverCapacityRequest(
            request_id=f"{prefix}-capacity",
            user_id=user,
            capacity=money(1_000 + 100 * cycle),
            reason=f"cycle {cycle}",
        )
        close = pb.CloseObligationRequest(
            request_id=f"{prefix}-close", outcome=pb.OBLIGATION_OUTCOME_ON_TIME, close_time=PAID_AT
        )
        operations += [
            # Capacity 1000 + 100 * cycle while each earlier cycle left a hold of 100 open.
            Operation(
                capacity.request_id, "SetWaiverCapacity", lambda _, r=capacity: r, entries={user: 1}
            ),
            Operation(
                f"{prefix}-a",
                "PlaceHold",
                place("a", 400),
                entries={user: 1},
                remember=remember_hold("a"),
            ),
            Operation(
                f"{prefix}-b",
                "PlaceHold",
                place("b", 400),
                entries={user: 1},
                remember=remember_hold("b"),
            ),
            Operation(f"{prefix}-x", "PlaceHold", place("x", 400), refusal="INSUFFICIENT_CAPACITY"),
            Operation(f"{prefix}-c", "PlaceHold", place("c", 100), entries={user: 1}),
            Operation(
                capture_a.request_id,
                "CaptureHold",
                with_hold(capture_a, "a"),
                entries={user: 2},
                remember=remember_obligation("fee"),
            ),
            Operation(
                f"{prefix}-release-b",
                "ReleaseHold",
                with_hold(
                    pb.ReleaseHoldRequest(request_id=f"{prefix}-release-b", fulfilled=True), "b"
                ),
                entries={user: 1},
            ),
            Operation(
                f"{prefix}-capture-a-again",
                "CaptureHold",
                with_hold(
                    pb.CaptureHoldRequest(request_id=f"{prefix}-capture-a-again", amount=money(10)),
                    "a",
                ),
                refusal="HOLD_ALREADY_RESOLVED",
            ),
            Operation(
                f"{prefix}-pay-1",
                "RecordPayment",
                with_obligation(payment("pay-1", 100), "fee"),
                entries={user: 1},
            ),
            Operation(
                f"{prefix}-pay-too-much",
                "RecordPayment",
                with_obligation(payment("pay-too-much", 200), "fee"),
                refusal="PAYMENT_EXCEEDS_DUE",
            ),
            Operation(
                f"{prefix}-pay-2",
                "RecordPayment",
                with_obligation(payment("pay-2", 150), "fee"),
                entries={user: 1},
            ),
            Operation(
                close.request_id,
                "CloseObligation",
                with_obligation(close, "fee"),
                entries={user: 1},
            ),
            Operation(
                shared_obligation.request_id,
                "CreateObligation",
                lambda _, r=shared_obligation: r,
                entries={SHARED_USER: 1},
            ),
            Operation(
                statements.request_id,
                "RecordPartnerStatements",
                lambda _, r=statements: r,
                entries={user: 2 if cycle == 0 else 1},
                expected_result=(1, 0, True) if cycle == 0 else (1, 1, False),
            ),
        ]
    return operations


class Progress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.acknowledged = 0
        self.retries = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.aborted = threading.Event()

    def acknowledge(self, retries: int) -> None:
        with self.lock:
            self.acknowledged += 1
            self.retries += retries


def _until_acknowledged(
    stub: Any,
    method: str,
    request: Any,
    deadline: float,
    abort: threading.Event,
    first_timeout_s: float,
) -> tuple[Any, Any, int]:
    """(response, None, retries) or (None, (code, reason), retries), retrying only what the
    contract says to retry, always with the same request."""
    retries = 0
    while True:
        timeout_s = first_timeout_s if retries == 0 else CALL_TIMEOUT_S
        try:
            return getattr(stub, method)(request, timeout=timeout_s), None, retries
        except grpc.RpcError as error:
            retry = time.monotonic() < deadline and not abort.is_set()
            if error.code() in RETRIED and retry:
                retries += 1
                time.sleep(min(0.5, 0.02 * retries))
                continue
            return None, (error.code(), error_details(error).reason), retries


def _client(
    thread: int,
    address: str,
    connect: Any,
    progress: Progress,
    deadline: float,
    failures: list[str],
) -> dict[str, Any]:
    ids: dict[str, str] = {}
    answers: dict[str, Any] = {}
    rng = random.Random(thread)
    channel, stub = connect(address)
    with channel:
        for operation in operations_of(thread):
            request = operation.build(ids)
            first_timeout_s = rng.choice((*IMPATIENT_TIMEOUTS_S, CALL_TIMEOUT_S, CALL_TIMEOUT_S))
            response, error, retries = _until_acknowledged(
                stub, operation.method, request, deadline, progress.aborted, first_timeout_s
            )
            progress.acknowledge(retries)
            if operation.refusal is None:
                if error is not None:
                    failures.append(f"{operation.request_id} should succeed, got {error}")
                    return answers
                if operation.remember is not None:
                    operation.remember(ids, response)
                if operation.expected_result is not None:
                    (result,) = response.results
                    got = (
                        result.statements_recorded,
                        result.statements_unchanged,
                        result.credit_line_recorded,
                    )
                    if got != operation.expected_result:
                        failures.append(
                            f"{operation.request_id}: {got} != {operation.expected_result}"
                        )
            elif error != (grpc.StatusCode.FAILED_PRECONDITION, operation.refusal):
                got = error or "success"
                failures.append(f"{operation.request_id}: {got} instead of {operation.refusal}")
            answers[operation.request_id] = response
    return answers


def test_every_acknowledged_operation_is_applied_exactly_once_across_crashes(
    resilience_database_url: str, start_ledger: Any, ledger_connect: Any, ledger_reading: Any
) -> None:
    ledger = start_ledger(resilience_database_url, sweep_interval_s="0.5")
    plans = {thread: operations_of(thread) for thread in range(THREADS)}
    progress = Progress(sum(len(plan) for plan in plans.values()))
    deadline = time.monotonic() + LOAD_DEADLINE_S
    failures: list[str] = []
    kills: list[int] = []

    def killer() -> None:
        rng = random.Random(len(resilience_database_url))
        try:
            for number in range(1, KILLS + 1):
                while progress.acknowledged < number / (KILLS + 1) * progress.total:
                    if progress.done.is_set() or time.monotonic() > deadline:
                        return
                    time.sleep(0.005)
                # At an arbitrary moment of the load, not right after an answer.
                time.sleep(rng.uniform(0, 0.05))
                ledger.kill()
                kills.append(progress.acknowledged)
                time.sleep(0.3)
                ledger.start()
        except BaseException as error:  # a failed restart ends the load at once
            failures.append(f"restarting the ledger failed: {error}")
            progress.aborted.set()

    clients = [
        threading.Thread(
            target=lambda t=thread: _client(
                t, ledger.address, ledger_connect, progress, deadline, failures
            ),
            name=f"client-{thread}",
        )
        for thread in range(THREADS)
    ]
    killing = threading.Thread(target=killer, name="killer")
    killing.start()
    for client in clients:
        client.start()
    for client in clients:
        client.join(LOAD_DEADLINE_S + 30)
    progress.done.set()
    killing.join(120)
    assert not any(client.is_alive() for client in clients), "a client never finished"
    assert not failures, failures
    assert progress.acknowledged == progress.total
    assert len(kills) == KILLS, f"the ledger was killed {len(kills)} times, not {KILLS}"
    assert progress.retries > 0, "no call was interrupted by a crash"

    channel, stub = ledger_connect(ledger.address)
    with channel:
        _check(stub, plans, ledger_reading)


def _check(stub: Any, plans: dict[int, list[Operation]], reading: Any) -> None:
    entries = reading.journal(stub)
    written: Counter[tuple[str, str]] = Counter((e.request_id, e.user_id) for e in entries)
    expected: Counter[tuple[str, str]] = Counter()
    for plan in plans.values():
        for operation in plan:
            for user_id, count in operation.entries.items():
                expected[operation.request_id, user_id] += count
    # Exactly once: each request's entries, no more, no fewer, and nothing from anywhere else.
    differences = {
        key: (written[key], expected[key])
        for key in written.keys() | expected.keys()
        if written[key] != expected[key]
    }
    assert not differences, f"(written, expected) entries per request: {differences}"

    users = [f"crash-user-{thread}" for thread in plans] + [SHARED_USER]
    report = reading.chains_verify(stub, users)
    assert report.entries_checked == len(entries)
    reading.placements_within_capacity(entries)

    for thread, plan in plans.items():
        user = f"crash-user-{thread}"
        account = stub.GetAccountSummary(
            pb.GetAccountSummaryRequest(user_id=user), timeout=30
        ).account
        assert account.waiver_capacity.amount_minor == 1_000 + 100 * (CYCLES - 1)
        assert account.held.amount_minor == 100 * CYCLES
        assert account.open_hold_count == CYCLES
        assert account.outstanding.amount_minor == 0
        assert account.outcomes == pb.OutcomeCounts(on_time=CYCLES, fulfilled=CYCLES)
        assert account.last_user_sequence == sum(op.entries.get(user, 0) for op in plan)
        history = stub.GetCreditHistory(
            pb.GetCreditHistoryRequest(user_id=user, max_statements=24), timeout=30
        )
        assert history.credit_line == money(CREDIT_LINE, STATEMENT_CURRENCY)
        assert sorted(s.period.month for s in history.statements) == list(range(1, CYCLES + 1))
        for statement in history.statements:
            assert statement.balance.amount_minor == _statement_balance(statement.period.month)
        assert len(history.obligations) == CYCLES
        assert all(o.outcome == pb.OBLIGATION_OUTCOME_ON_TIME for o in history.obligations)
    shared = stub.GetAccountSummary(
        pb.GetAccountSummaryRequest(user_id=SHARED_USER), timeout=30
    ).account
    assert shared.outstanding.amount_minor == SHARED_OBLIGATION * CYCLES * len(plans)
    assert shared.last_user_sequence == CYCLES * len(plans)
