"""Slow, stalled and dropped connections between the services, through the fault proxy on each
link (`tests.support.fault_proxy`), and back: deadlines propagate, neither threads nor
connections run out, health reports the degraded state, and the suite recovers without a
restart. Then every order is created again by its merchant (as a merchant told UNAVAILABLE
does), and the waiver and the ledger agree on every order exactly once.

What "bounded" means here is said in status codes, not in seconds: a caller whose deadline is
far off gets the waiver's own UNAVAILABLE, so the waiver gave up on its dependency by its own
deadline and answered; a caller whose deadline is nearer than the waiver's own gets
DEADLINE_EXCEEDED, and the waiver's workers are free again for calls that need no dependency
(a read of an order), so the waiver's outbound calls ended with the caller's deadline and did
not wait for their own.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from sesame.ledger.v1 import ledger_service_pb2_grpc
from sesame.score.v1 import score_service_pb2 as score_pb, score_service_pb2_grpc
from sesame.type.v1 import time_range_pb2
from sesame.waiver.v1 import waiver_service_pb2 as pb, waiver_service_pb2_grpc

from services.common.grpc_errors import error_details
from services.datasets.consent import grant_consent
from tests.support.faulty_suite import (
    FaultySuite,
    health_status as health_of,
    start_faulty_suite,
    stop_everything,
    wait_for_health,
)
from tests.support.order_flows import (
    MERCHANT,
    SCENARIO,
    UNIT,
    Progress,
    check_agreement,
    list_orders,
    money,
    put_policy,
    timestamp,
    until_answered,
    wait_until_nothing_is_pending,
)

pytestmark = pytest.mark.slow

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
LEDGER = "sesame.ledger.v1.LedgerService"
SCORE = "sesame.score.v1.ScoreService"
WAIVER = "sesame.waiver.v1.WaiverService"
# The waiver waits this long for the ledger and the score service at most: far longer than the
# impatient callers' deadline, far shorter than the patient callers'.
WAIVER_DEPENDENCY_DEADLINE_S = 8.0
WAIVER_WORKERS = 4
IMPATIENT_DEADLINE_S = 1.0
PATIENT_DEADLINE_S = 60.0
# Several times the waiver's workers, so that workers held to their own deadline would run out.
BURST = 6 * WAIVER_WORKERS
# More users than the module's orders: each order is for a user of its own.
NET_USERS = [f"net-user-{index}" for index in range(200)]
# More connections than this from one waiver to one dependency would be a connection storm.
CONNECTIONS_MAX = 3
THREADS_GROWTH_MAX = 8
RECOVERY_WAIT_S = 30.0
# Each chunk of bytes, each way: a call of a few round trips takes a few tenths of a second.
SLOW_LINK_DELAY_S = 0.03


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultySuite]:
    directory = tmp_path_factory.mktemp("faulty-suite")
    started: list[Any] = []
    try:
        suite = start_faulty_suite(
            directory,
            f"sqlite:///{directory / 'ledger.db'}",
            f"sqlite:///{directory / 'waiver.db'}",
            started,
            ledger_deadline_s=str(WAIVER_DEPENDENCY_DEADLINE_S),
            score_deadline_s=str(WAIVER_DEPENDENCY_DEADLINE_S),
            max_workers=str(WAIVER_WORKERS),
            database_pool_size=str(WAIVER_WORKERS + 2),
        )
        put_policy(suite.waiver.address)
        # Each order is for a user of its own, and every such user consents first (straight to
        # the ledger, past the proxies), as a user does before a merchant's first order.
        with grpc.insecure_channel(suite.ledger.address) as channel:
            grant_consent(channel, NET_USERS, request_id_prefix="net-consent-")
        yield suite
    finally:
        for proxy in started:
            if hasattr(proxy, "heal"):
                proxy.heal()
        stop_everything(started)


@pytest.fixture(scope="module")
def creates() -> list[pb.CreateOrderRequest]:
    """Every CreateOrder sent, answered or not: each is sent again at the end."""
    return []


@pytest.fixture
def waiver(suite: FaultySuite) -> Iterator[Any]:
    with grpc.insecure_channel(suite.waiver.address) as channel:
        yield waiver_service_pb2_grpc.WaiverServiceStub(channel)


def new_create(creates: list[pb.CreateOrderRequest]) -> pb.CreateOrderRequest:
    out_order_no = f"net-{uuid.uuid4().hex[:10]}"
    now_s = time.time()
    request = pb.CreateOrderRequest(
        request_id=f"{out_order_no}-create",
        merchant_id=MERCHANT,
        out_order_no=out_order_no,
        user_id=NET_USERS[len(creates)],
        scenario_id=SCENARIO,
        risk_fund_type=pb.RISK_FUND_TYPE_DEPOSIT,
        risk_amount=money(99 * UNIT),
        time_range=time_range_pb2.TimeRange(
            start_time=timestamp(now_s - 60), end_time=timestamp(now_s + 3600)
        ),
    )
    creates.append(request)
    return request


def outcome(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as error:
        return error.code(), error_details(error).reason  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, ""


def burst(
    waiver: Any, creates: list[pb.CreateOrderRequest], deadline_s: float, count: int
) -> list[tuple[grpc.StatusCode, str]]:
    """`count` CreateOrders at once, each with the given deadline."""
    requests = [new_create(creates) for _ in range(count)]
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(
            pool.map(
                lambda request: outcome(lambda: waiver.CreateOrder(request, timeout=deadline_s)),
                requests,
            )
        )


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


def sockets_of(pid: int) -> int:
    """The process's open sockets (its database files aside, which its pool opens as needed)."""
    directory = f"/proc/{pid}/fd"
    targets = []
    for descriptor in os.listdir(directory):
        with contextlib.suppress(OSError):  # closed meanwhile
            targets.append(os.readlink(f"{directory}/{descriptor}"))
    return sum(target.startswith("socket:") for target in targets)


def answers_a_read(waiver: Any) -> bool:
    """Whether the waiver answers a read of its own (no dependency) within a few seconds."""
    code, _ = outcome(
        lambda: waiver.GetOrder(
            pb.GetOrderRequest(merchant_id=MERCHANT, out_order_no="no-such-order"), timeout=5
        )
    )
    return code == grpc.StatusCode.NOT_FOUND


def wait_until_created(waiver: Any, creates: list[pb.CreateOrderRequest]) -> pb.Order:
    """A new order, retried with the same request as the link heals: recovery, no restart."""
    request = new_create(creates)
    deadline = time.monotonic() + RECOVERY_WAIT_S
    while True:
        try:
            return waiver.CreateOrder(request, timeout=PATIENT_DEADLINE_S).order
        except grpc.RpcError as error:
            if (
                error.code()
                not in (  # type: ignore[attr-defined]
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.ABORTED,
                )
                or time.monotonic() > deadline
            ):
                raise
            time.sleep(0.2)


# ----------------------------------------------------------------------------------------------


def test_a_stalled_ledger_link_degrades_the_waiver_and_heals_without_restart(
    suite: FaultySuite, waiver: Any, creates: list[pb.CreateOrderRequest]
) -> None:
    wait_until_created(waiver, creates)
    pid = suite.waiver.process.pid  # type: ignore[union-attr]
    threads_before, sockets_before = threads_of(pid), sockets_of(pid)
    starts = suite.waiver.starts

    suite.waiver_to_ledger.stall()
    try:
        wait_for_health(suite.waiver.address, f"dependency:{LEDGER}", NOT_SERVING)
        # Impatient callers: their deadline, not the waiver's, ends the waiver's ledger calls.
        impatient = burst(waiver, creates, IMPATIENT_DEADLINE_S, BURST)
        # The waiver's answer may beat the caller's own timer by a hair: UNAVAILABLE then, and
        # a call that waited for a worker past its deadline does not even ask the score service.
        assert set(impatient) <= {
            (grpc.StatusCode.DEADLINE_EXCEEDED, ""),
            (grpc.StatusCode.UNAVAILABLE, "LEDGER_UNAVAILABLE"),
            (grpc.StatusCode.UNAVAILABLE, "SCORE_UNAVAILABLE"),
        }, impatient
        assert answers_a_read(waiver), "the waiver's workers are still held"
        # Patient callers: the waiver gives up by its own deadline and says why.
        patient = burst(waiver, creates, PATIENT_DEADLINE_S, WAIVER_WORKERS)
        assert set(patient) == {(grpc.StatusCode.UNAVAILABLE, "LEDGER_UNAVAILABLE")}, patient
        assert answers_a_read(waiver)
        assert health_of(suite.waiver.address, WAIVER) == SERVING
        assert suite.waiver_to_ledger.open_connections <= CONNECTIONS_MAX
        assert threads_of(pid) <= threads_before + THREADS_GROWTH_MAX
        assert sockets_of(pid) <= sockets_before + CONNECTIONS_MAX
    finally:
        suite.waiver_to_ledger.heal()

    wait_for_health(suite.waiver.address, f"dependency:{LEDGER}", SERVING)
    wait_until_created(waiver, creates)
    assert suite.waiver.starts == starts, "the waiver was restarted"
    assert suite.waiver.process.pid == pid  # type: ignore[union-attr]


def test_a_dropped_ledger_link_is_unavailable_at_once_and_heals(
    suite: FaultySuite, waiver: Any, creates: list[pb.CreateOrderRequest]
) -> None:
    suite.waiver_to_ledger.drop()
    try:
        wait_for_health(suite.waiver.address, f"dependency:{LEDGER}", NOT_SERVING)
        answers = burst(waiver, creates, PATIENT_DEADLINE_S, WAIVER_WORKERS)
        assert set(answers) == {(grpc.StatusCode.UNAVAILABLE, "LEDGER_UNAVAILABLE")}, answers
    finally:
        suite.waiver_to_ledger.heal()
    wait_for_health(suite.waiver.address, f"dependency:{LEDGER}", SERVING)
    wait_until_created(waiver, creates)


def test_a_slow_ledger_link_slows_orders_down_without_failing_them(
    suite: FaultySuite, waiver: Any, creates: list[pb.CreateOrderRequest]
) -> None:
    suite.waiver_to_ledger.slow(SLOW_LINK_DELAY_S)
    try:
        answers = burst(waiver, creates, PATIENT_DEADLINE_S, WAIVER_WORKERS)
        assert {code for code, _ in answers} == {grpc.StatusCode.OK}, answers
    finally:
        suite.waiver_to_ledger.heal()


def test_a_stalled_score_link_refuses_orders_by_policy_and_heals(
    suite: FaultySuite, waiver: Any, creates: list[pb.CreateOrderRequest]
) -> None:
    suite.waiver_to_score.stall()
    try:
        wait_for_health(suite.waiver.address, f"dependency:{SCORE}", NOT_SERVING)
        assert health_of(suite.waiver.address, f"dependency:{LEDGER}") == SERVING
        answers = burst(waiver, creates, PATIENT_DEADLINE_S, WAIVER_WORKERS)
        # The policy refuses an order it cannot score (scoring_unavailable_action).
        assert set(answers) == {(grpc.StatusCode.UNAVAILABLE, "SCORE_UNAVAILABLE")}, answers
        assert answers_a_read(waiver)
    finally:
        suite.waiver_to_score.heal()
    wait_for_health(suite.waiver.address, f"dependency:{SCORE}", SERVING)
    wait_until_created(waiver, creates)


def test_a_stalled_ledger_link_of_the_score_service_degrades_it_and_heals(
    suite: FaultySuite,
) -> None:
    with grpc.insecure_channel(suite.score.address) as channel:
        scores = score_service_pb2_grpc.ScoreServiceStub(channel)

        # A new user each time, one who never consented: no cache answers, the score service
        # must read the ledger to refuse (CONSENT_MISSING), as it must to score anyone.
        healthy = (grpc.StatusCode.FAILED_PRECONDITION, "CONSENT_MISSING")

        def score_of_a_new_user() -> tuple[grpc.StatusCode, str]:
            user = f"net-score-{uuid.uuid4().hex[:10]}"
            return outcome(
                lambda: scores.GetScore(
                    score_pb.GetScoreRequest(user_id=user), timeout=PATIENT_DEADLINE_S
                )
            )

        suite.score_to_ledger.stall()
        try:
            wait_for_health(suite.score.address, f"dependency:{LEDGER}", NOT_SERVING)
            assert health_of(suite.score.address, SCORE) == SERVING
            assert score_of_a_new_user() == (grpc.StatusCode.UNAVAILABLE, "LEDGER_UNAVAILABLE")
        finally:
            suite.score_to_ledger.heal()
        wait_for_health(suite.score.address, f"dependency:{LEDGER}", SERVING)
        deadline = time.monotonic() + RECOVERY_WAIT_S
        while score_of_a_new_user() != healthy and time.monotonic() < deadline:
            time.sleep(0.2)
        assert score_of_a_new_user() == healthy


def test_after_the_faults_every_order_and_the_ledger_agree(
    suite: FaultySuite, waiver: Any, creates: list[pb.CreateOrderRequest]
) -> None:
    """Every merchant comes back and creates its order with the same request: each is created
    once (or was already), whatever the faults did to its first attempts; then the two services
    agree on every order."""
    assert creates, "run with the tests above"
    for proxy in suite.proxies:
        proxy.heal()
    progress = Progress()
    for request in creates:
        until_answered(waiver.CreateOrder, request, progress)
    wait_until_nothing_is_pending(suite.waiver_database_url)
    orders = list_orders(waiver)
    assert {order.out_order_no for order in orders} == {r.out_order_no for r in creates}
    with grpc.insecure_channel(suite.ledger.address) as channel:
        summary = check_agreement(ledger_service_pb2_grpc.LedgerServiceStub(channel), orders)
    print(f"\n{len(creates)} orders; retries {dict(progress.retries)}; {summary}")
