"""The local overlay, rendered as `kubectl apply -k deploy/overlays/local` would apply it, runs:
every Deployment's container started from its own command, args, env and ports as a local
process (tests/support/manifests.py says what stands in for the cluster), every probe it
declares passes within what the kubelet allows, an order goes through the three services as the
manifests wire them, and SIGTERM stops each pod within its terminationGracePeriodSeconds."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sesame.ledger.v1 import ledger_service_pb2, ledger_service_pb2_grpc
from sesame.type.v1.money_pb2 import Money
from sesame.type.v1.time_range_pb2 import TimeRange
from sesame.waiver.v1 import waiver_service_pb2 as waiver, waiver_service_pb2_grpc

from services.datasets.consent import grant_consent
from tests.support.manifests import LocalPods, probe_budget_s, render

CREATE_RETRY_S = 30.0

PROBES_TIMEOUT_S = 180.0


@pytest.fixture(scope="module")
def local_pods(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPods]:
    pods = LocalPods(render("local"), tmp_path_factory.mktemp("local-overlay"))
    pods.start()
    try:
        pods.wait_for_probes(PROBES_TIMEOUT_S)
        yield pods
    finally:
        pods.kill_all()


def test_the_local_overlay_runs_one_pod_of_each_service(local_pods: LocalPods) -> None:
    assert sorted(local_pods.pods) == ["sesame-ledger", "sesame-score", "sesame-waiver"]


def test_every_declared_probe_passes_within_what_the_kubelet_allows(local_pods: LocalPods) -> None:
    for pod in local_pods.pods.values():
        declared = dict(local_pods.declared_probes(pod))
        assert {"livenessProbe", "readinessProbe"} <= set(declared), pod.name
        for kind, probe in declared.items():
            if kind == "livenessProbe" and "startupProbe" in declared:
                continue  # the kubelet checks liveness only once the startup probe passed
            if kind == "readinessProbe":
                continue  # an unready pod gets no traffic but is not restarted
            assert pod.probe_seconds[kind] < probe_budget_s(probe), (pod.name, kind)


def test_an_order_goes_through_the_services_as_the_manifests_wire_them(
    local_pods: LocalPods,
) -> None:
    now = datetime.now(UTC)
    start, end = Timestamp(), Timestamp()
    start.FromDatetime(now)
    end.FromDatetime(now + timedelta(hours=2))
    waiver_port = local_pods.pods["sesame-waiver"].local_port("grpc")
    # The user consents to be scored first, or the waiver refuses the order.
    ledger_port = local_pods.pods["sesame-ledger"].local_port("grpc")
    with grpc.insecure_channel(f"127.0.0.1:{ledger_port}") as channel:
        grant_consent(channel, ["pod-user-1"], request_id_prefix="pod-consent-")
    request = waiver.CreateOrderRequest(
        request_id="pod-bike-1-create",
        merchant_id="sesame-demo",
        out_order_no="pod-bike-1",
        user_id="pod-user-1",
        scenario_id="bike",
        risk_fund_type=waiver.RISK_FUND_TYPE_DEPOSIT,
        risk_amount=Money(currency_code="CNY", amount_minor=9900),
        time_range=TimeRange(start_time=start, end_time=end),
    )
    with grpc.insecure_channel(f"127.0.0.1:{waiver_port}") as channel:
        stub = waiver_service_pb2_grpc.WaiverServiceStub(channel)
        # The pods start together, as in a cluster: until the waiver has reached the score
        # service it answers UNAVAILABLE, which a client retries with the same request id.
        deadline = time.monotonic() + CREATE_RETRY_S
        while True:
            try:
                order = stub.CreateOrder(request, timeout=10).order
                break
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)
    assert order.decision.outcome == waiver.WAIVER_OUTCOME_FULL
    assert order.state == waiver.ORDER_STATE_DOING


def scrape(local_pods: LocalPods, pod_name: str) -> str:
    port = local_pods.pods[pod_name].local_port("metrics")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body: str = response.read().decode()
    return body


def test_each_pod_exposes_what_the_alerts_and_dashboard_read_on_its_metrics_port(
    local_pods: LocalPods,
) -> None:
    ledger_port = local_pods.pods["sesame-ledger"].local_port("grpc")
    with grpc.insecure_channel(f"127.0.0.1:{ledger_port}") as channel:
        report = ledger_service_pb2_grpc.LedgerServiceStub(channel).VerifyChain(
            ledger_service_pb2.VerifyChainRequest(), timeout=30
        )
    assert report.intact
    ledger = scrape(local_pods, "sesame-ledger")
    assert 'sesame_ledger_chain_verifications_total{result="intact"} 1.0' in ledger
    assert "sesame_grpc_server_handling_seconds_bucket" in ledger
    assert "sesame_score_model_loaded 1.0" in scrape(local_pods, "sesame-score")
    waiver = scrape(local_pods, "sesame-waiver")
    # The order the test above created, once (an earlier test in this module).
    assert 'sesame_waiver_decisions_total{outcome="FULL",scenario="bike"} 1.0' in waiver
    assert 'sesame_waiver_waived_minor_total{currency="CNY",scenario="bike"} 9900.0' in waiver
    assert 'sesame_waiver_orders_settled_total{scenario="bike",state="DOING"} 1.0' in waiver


def test_sigterm_stops_every_pod_cleanly_within_its_grace_period(local_pods: LocalPods) -> None:
    stopped = local_pods.stop()
    for name, (exit_code, _seconds) in stopped.items():
        assert exit_code == 0, (name, local_pods.pods[name].output()[-3000:])
