"""One CreateOrder through the suite is one trace: spans from the waiver, the score service and
the ledger, each process exporting to an OTLP collector (this test's own, in-process)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from sesame.type.v1.money_pb2 import Money
from sesame.type.v1.time_range_pb2 import TimeRange
from sesame.waiver.v1 import waiver_service_pb2 as waiver, waiver_service_pb2_grpc

from services.datasets.consent import grant_consent
from services.suite.launch import plaintext_suite
from tests.support.suite import launched_suite

SPANS_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ExportedSpan:
    service_name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every span the services export."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.spans: list[ExportedSpan] = []

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            attributes = {
                attribute.key: attribute.value.string_value
                for attribute in resource_spans.resource.attributes
            }
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ExportedSpan(
                            attributes.get("service.name", ""),
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.name,
                        )
                    )
        with self._lock:
            self.spans.extend(received)
        return trace_service_pb2.ExportTraceServiceResponse()

    def snapshot(self) -> list[ExportedSpan]:
        with self._lock:
            return list(self.spans)


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[Collector, int]]:
    servicer = Collector()
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, port
    finally:
        server.stop(0)


@pytest.fixture(scope="module")
def traced_suite(
    collector: tuple[Collector, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    _, port = collector
    endpoint = f"http://127.0.0.1:{port}"
    environment = {
        "SESAME_LEDGER_OTLP_ENDPOINT": endpoint,
        "SESAME_SCORE_OTLP_ENDPOINT": endpoint,
        "SESAME_WAIVER_OTLP_ENDPOINT": endpoint,
        "SESAME_SCORE_WORKERS": "1",
        **plaintext_suite(),
        # Export within a fifth of a second, not OpenTelemetry's default five.
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    with launched_suite(tmp_path_factory.mktemp("traced-suite"), environment) as addresses:
        yield addresses


def create_bike_order(addresses: dict[str, str], out_order_no: str) -> waiver.Order:
    """A bike order for a user of its own, who consents to be scored first (a trace of its own,
    before the order's)."""
    user_id = f"user-of-{out_order_no}"
    with grpc.insecure_channel(addresses["ledger"]) as channel:
        grant_consent(channel, [user_id], request_id_prefix="traced-consent-")
    now = datetime.now(UTC)
    start, end = Timestamp(), Timestamp()
    start.FromDatetime(now)
    end.FromDatetime(now + timedelta(hours=2))
    with grpc.insecure_channel(addresses["waiver"]) as channel:
        stub = waiver_service_pb2_grpc.WaiverServiceStub(channel)
        return stub.CreateOrder(
            waiver.CreateOrderRequest(
                request_id=f"{out_order_no}-create",
                merchant_id="sesame-demo",
                out_order_no=out_order_no,
                user_id=user_id,
                scenario_id="bike",
                risk_fund_type=waiver.RISK_FUND_TYPE_DEPOSIT,
                risk_amount=Money(currency_code="CNY", amount_minor=9900),
                time_range=TimeRange(start_time=start, end_time=end),
            ),
            timeout=10,
        ).order


def test_one_create_order_is_one_trace_across_waiver_score_and_ledger(
    collector: tuple[Collector, int], traced_suite: dict[str, str]
) -> None:
    spans_collected, _ = collector
    order = create_bike_order(traced_suite, "traced-bike-1")
    assert order.decision.outcome == waiver.WAIVER_OUTCOME_FULL

    create_span = None
    deadline = time.monotonic() + SPANS_TIMEOUT_S
    while time.monotonic() < deadline:
        spans = spans_collected.snapshot()
        create_span = next(
            (
                span
                for span in spans
                if span.service_name == "sesame-waiver"
                and span.name == "/sesame.waiver.v1.WaiverService/CreateOrder"
            ),
            None,
        )
        if create_span is not None:
            in_trace = [span for span in spans if span.trace_id == create_span.trace_id]
            if {"sesame-waiver", "sesame-score", "sesame-ledger"} <= {
                span.service_name for span in in_trace
            } and any(span.name.endswith("/GetCreditHistory") for span in in_trace):
                break
        time.sleep(0.2)
    assert create_span is not None, "the waiver exported no CreateOrder span"
    in_trace = [span for span in spans if span.trace_id == create_span.trace_id]
    by_service = {span.service_name for span in in_trace}
    assert by_service == {"sesame-waiver", "sesame-score", "sesame-ledger"}, in_trace
    # The order's root is the waiver's server span; every other span descends from it.
    assert create_span.parent_span_id == ""
    names = {(span.service_name, span.name) for span in in_trace}
    assert ("sesame-score", "/sesame.score.v1.ScoreService/GetScore") in names
    assert ("sesame-ledger", "/sesame.ledger.v1.LedgerService/GetCreditHistory") in names
    assert ("sesame-ledger", "/sesame.ledger.v1.LedgerService/PlaceHold") in names
    span_ids = {span.span_id for span in in_trace}
    assert all(span.parent_span_id in span_ids for span in in_trace if span is not create_span), (
        in_trace
    )
    # Nothing else shares the trace: one order, one trace.
    other_orders = [span for span in spans if span.name.endswith("/CreateOrder")]
    assert {span.trace_id for span in other_orders} == {create_span.trace_id}
