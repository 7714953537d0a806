"""A real server on 127.0.0.1, with a probe service built from well-known protobuf types."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import structlog
from google.protobuf import empty_pb2, wrappers_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from prometheus_client import REGISTRY

from services.common.errors import InvalidArgument
from services.common.grpc_errors import error_details
from services.common.runtime import ServiceRegistration, SesameServer
from services.common.server import create_server, stop_gracefully
from services.common.settings import ServerSettings, load_settings

PROBE_SERVICE = "sesame.testing.v1.Probe"
SECRET = "password=hunter2 at db.internal"
WAIT_S = 5.0

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

StringValue = wrappers_pb2.StringValue
Empty = empty_pb2.Empty


def serialized(message: Message) -> bytes:
    return message.SerializeToString()


@dataclass
class Probe:
    """A tiny servicer with one method per behaviour under test."""

    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def echo(self, request: StringValue, context: grpc.ServicerContext) -> StringValue:
        return request

    def identify(
        self, request: error_details_pb2.RequestInfo, context: grpc.ServicerContext
    ) -> Empty:
        return Empty()

    def reject(self, request: StringValue, context: grpc.ServicerContext) -> StringValue:
        raise InvalidArgument.for_field("value", "must not be empty", reason="VALUE_REQUIRED")

    def crash(self, request: StringValue, context: grpc.ServicerContext) -> StringValue:
        raise RuntimeError(SECRET)

    def abort(self, request: StringValue, context: grpc.ServicerContext) -> StringValue:
        context.abort(grpc.StatusCode.NOT_FOUND, "no such probe")

    def block(self, request: Empty, context: grpc.ServicerContext) -> Empty:
        self.entered.set()
        self.release.wait(WAIT_S)
        return Empty()

    def count(self, request: StringValue, context: grpc.ServicerContext) -> Iterator[StringValue]:
        for number in range(int(request.value)):
            yield StringValue(value=str(number))

    def count_then_reject(
        self, request: StringValue, context: grpc.ServicerContext
    ) -> Iterator[StringValue]:
        yield StringValue(value="0")
        raise InvalidArgument.for_field("value", "too high")

    def join(self, requests: Iterator[StringValue], context: grpc.ServicerContext) -> StringValue:
        values = [request.value for request in requests]
        if "crash" in values:
            raise RuntimeError(SECRET)
        return StringValue(value="".join(values))

    def echo_each(
        self, requests: Iterator[StringValue], context: grpc.ServicerContext
    ) -> Iterator[StringValue]:
        for request in requests:
            if request.value == "crash":
                raise RuntimeError(SECRET)
            yield request

    def echo_until_cancelled(
        self, requests: Iterator[StringValue], context: grpc.ServicerContext
    ) -> Iterator[StringValue]:
        cancelled = threading.Event()
        context.add_callback(cancelled.set)
        yield next(requests)
        # Reading on only once the caller is known to be gone makes gRPC raise from the
        # request iterator every time, rather than sometimes just ending it.
        cancelled.wait(WAIT_S)
        yield from requests

    def registration(self, *, initially_serving: bool = True) -> ServiceRegistration:
        def unary(
            behavior: Callable[..., Message], request_type: type[Message] = StringValue
        ) -> grpc.RpcMethodHandler[Any, Any]:
            return grpc.unary_unary_rpc_method_handler(
                behavior, request_type.FromString, serialized
            )

        handler = grpc.method_handlers_generic_handler(
            PROBE_SERVICE,
            {
                "Echo": unary(self.echo),
                "Identify": unary(self.identify, error_details_pb2.RequestInfo),
                "Reject": unary(self.reject),
                "Crash": unary(self.crash),
                "Abort": unary(self.abort),
                "Block": unary(self.block, Empty),
                "Count": grpc.unary_stream_rpc_method_handler(
                    self.count, StringValue.FromString, StringValue.SerializeToString
                ),
                "CountThenReject": grpc.unary_stream_rpc_method_handler(
                    self.count_then_reject, StringValue.FromString, StringValue.SerializeToString
                ),
                "Join": grpc.stream_unary_rpc_method_handler(
                    self.join, StringValue.FromString, StringValue.SerializeToString
                ),
                "EchoEach": grpc.stream_stream_rpc_method_handler(
                    self.echo_each, StringValue.FromString, StringValue.SerializeToString
                ),
                "EchoUntilCancelled": grpc.stream_stream_rpc_method_handler(
                    self.echo_until_cancelled,
                    StringValue.FromString,
                    StringValue.SerializeToString,
                ),
            },
        )
        return ServiceRegistration(
            name=PROBE_SERVICE,
            add_to_server=lambda server: server.add_generic_rpc_handlers((handler,)),
            initially_serving=initially_serving,
        )


@dataclass
class Running:
    created: SesameServer
    channel: grpc.Channel
    probe: Probe

    def unary(
        self, method: str, request_type: type[Message] = StringValue
    ) -> grpc.UnaryUnaryMultiCallable[Any, Any]:
        return self.channel.unary_unary(
            f"/{PROBE_SERVICE}/{method}",
            request_serializer=serialized,
            response_deserializer=lambda data: data,
        )

    def unary_stream(self, method: str) -> grpc.UnaryStreamMultiCallable[Any, Any]:
        return self.channel.unary_stream(
            f"/{PROBE_SERVICE}/{method}",
            request_serializer=StringValue.SerializeToString,
            response_deserializer=StringValue.FromString,
        )

    def stream_unary(self, method: str) -> grpc.StreamUnaryMultiCallable[Any, Any]:
        return self.channel.stream_unary(
            f"/{PROBE_SERVICE}/{method}",
            request_serializer=StringValue.SerializeToString,
            response_deserializer=StringValue.FromString,
        )

    def stream_stream(self, method: str) -> grpc.StreamStreamMultiCallable[Any, Any]:
        return self.channel.stream_stream(
            f"/{PROBE_SERVICE}/{method}",
            request_serializer=StringValue.SerializeToString,
            response_deserializer=StringValue.FromString,
        )

    def health_status(self, service: str) -> int:
        # The health stubs' type hints omit the generated methods.
        stub: Any = health_pb2_grpc.HealthStub(self.channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=WAIT_S)
        return int(response.status)


StartServer = Callable[..., Running]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    started: list[Running] = []

    def start(environ: dict[str, str] | None = None, *, initially_serving: bool = True) -> Running:
        settings = load_settings(ServerSettings, {"SESAME_PORT": "0", **(environ or {})})
        probe = Probe()
        created = create_server(settings, [probe.registration(initially_serving=initially_serving)])
        created.server.start()
        running = Running(created, grpc.insecure_channel(f"127.0.0.1:{created.port}"), probe)
        started.append(running)
        return running

    yield start
    for running in started:
        running.probe.release.set()
        running.channel.close()
        running.created.server.stop(grace=None)


def call_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


CapturedLines = list[MutableMapping[str, Any]]


def completed_calls(captured: CapturedLines) -> CapturedLines:
    return [line for line in captured if line["event"] == "rpc_completed"]


def wait_for_completed_calls(captured: CapturedLines) -> CapturedLines:
    """For calls that end on the server after the client has moved on (cancellation)."""
    deadline = time.monotonic() + WAIT_S
    while not completed_calls(captured) and time.monotonic() < deadline:
        time.sleep(0.01)
    return completed_calls(captured)


# Health and reflection


def test_health_reports_serving_for_each_service_and_overall(start_server: StartServer) -> None:
    running = start_server()

    assert running.health_status(PROBE_SERVICE) == SERVING
    assert running.health_status("") == SERVING


def test_a_service_that_warms_up_is_not_serving_until_it_says_so(
    start_server: StartServer,
) -> None:
    running = start_server(initially_serving=False)

    assert running.health_status(PROBE_SERVICE) == NOT_SERVING
    assert running.health_status("") == NOT_SERVING

    running.created.health.set_serving(PROBE_SERVICE, True)

    assert running.health_status(PROBE_SERVICE) == SERVING
    assert running.health_status("") == SERVING


def test_setting_the_health_of_an_unknown_service_is_refused(start_server: StartServer) -> None:
    running = start_server()

    with pytest.raises(KeyError):
        running.created.health.set_serving("sesame.testing.v1.Typo", True)


def test_reflection_lists_the_services_health_and_reflection(start_server: StartServer) -> None:
    running = start_server()

    with structlog.testing.capture_logs() as captured:
        services = set(ProtoReflectionDescriptorDatabase(running.channel).get_services())
        # The reflection client keeps its stream open; ending it here keeps its access log
        # line inside this test.
        running.channel.close()
        wait_for_completed_calls(captured)

    assert services == {
        PROBE_SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }


def test_the_server_reports_the_port_it_bound(start_server: StartServer) -> None:
    running = start_server()

    # Port 0 asks for any free port; the one bound is what callers must be told.
    assert running.created.port > 0
    assert running.health_status("") == SERVING


# Error translation


def test_domain_error_becomes_invalid_argument_with_field_violation(
    start_server: StartServer,
) -> None:
    running = start_server()

    error = call_error(lambda: running.unary("Reject")(StringValue(), timeout=WAIT_S))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "value: must not be empty"
    assert error_details(error) == ("VALUE_REQUIRED", ("value",))


def test_an_unexpected_exception_becomes_internal_without_its_text(
    start_server: StartServer,
) -> None:
    running = start_server()

    with structlog.testing.capture_logs() as captured:
        error = call_error(lambda: running.unary("Crash")(StringValue(), timeout=WAIT_S))

    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == "internal error"
    # The string form includes the details and gRPC's debug information.
    assert SECRET not in str(error)
    assert SECRET not in str(error.trailing_metadata())
    [crash_line] = [line for line in captured if line["event"] == "rpc_handler_crashed"]
    assert crash_line["method"] == f"/{PROBE_SERVICE}/Crash"
    assert crash_line["exc_info"] is True


def test_an_abort_by_the_servicer_passes_through_untouched(start_server: StartServer) -> None:
    running = start_server()

    error = call_error(lambda: running.unary("Abort")(StringValue(), timeout=WAIT_S))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "no such probe"


def test_a_domain_error_in_the_middle_of_a_response_stream_is_translated(
    start_server: StartServer,
) -> None:
    running = start_server()
    responses = running.unary_stream("CountThenReject")(StringValue(), timeout=WAIT_S)

    assert next(responses).value == "0"
    error = call_error(lambda: next(responses))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(error) == ("INVALID_ARGUMENT", ("value",))


def test_a_crash_while_reading_a_request_stream_becomes_internal(
    start_server: StartServer,
) -> None:
    running = start_server()
    requests = iter([StringValue(value="a"), StringValue(value="crash")])

    error = call_error(lambda: running.stream_unary("Join")(requests, timeout=WAIT_S))

    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == "internal error"


def test_a_crash_in_a_bidirectional_stream_becomes_internal(start_server: StartServer) -> None:
    running = start_server()
    requests = iter([StringValue(value="a"), StringValue(value="crash")])
    responses = running.stream_stream("EchoEach")(requests, timeout=WAIT_S)

    assert next(responses).value == "a"
    error = call_error(lambda: next(responses))
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == "internal error"


def test_a_caller_cancelling_is_neither_a_crash_nor_translated(start_server: StartServer) -> None:
    running = start_server()
    caller_done = threading.Event()

    def requests() -> Iterator[StringValue]:
        yield StringValue(value="a")
        caller_done.wait(WAIT_S)

    with structlog.testing.capture_logs() as captured:
        responses = running.stream_stream("EchoUntilCancelled")(requests(), timeout=WAIT_S)
        assert next(responses).value == "a"
        responses.cancel()
        lines = wait_for_completed_calls(captured)
    caller_done.set()

    assert [(line["method"], line["code"]) for line in lines] == [
        (f"/{PROBE_SERVICE}/EchoUntilCancelled", "CANCELLED")
    ]
    assert not [line for line in captured if line["event"] == "rpc_handler_crashed"]


# Access log


def test_each_call_writes_one_access_log_line_with_its_code(start_server: StartServer) -> None:
    running = start_server()

    with structlog.testing.capture_logs() as captured:
        running.unary("Echo")(StringValue(value="hi"), timeout=WAIT_S)
        for method in ("Reject", "Crash", "Abort"):
            with pytest.raises(grpc.RpcError):
                running.unary(method)(StringValue(), timeout=WAIT_S)

    lines = completed_calls(captured)
    assert [(line["method"], line["code"]) for line in lines] == [
        (f"/{PROBE_SERVICE}/Echo", "OK"),
        (f"/{PROBE_SERVICE}/Reject", "INVALID_ARGUMENT"),
        (f"/{PROBE_SERVICE}/Crash", "INTERNAL"),
        (f"/{PROBE_SERVICE}/Abort", "NOT_FOUND"),
    ]
    for line in lines:
        assert set(line) == {
            "event",
            "log_level",
            "method",
            "code",
            "duration_ms",
            "request_id",
            "peer",
        }
        assert isinstance(line["duration_ms"], float)
        assert str(line["peer"]).startswith("ipv4:127.0.0.1:")


def test_a_code_set_without_raising_is_logged(start_server: StartServer) -> None:
    running = start_server()

    with structlog.testing.capture_logs() as captured:
        error = call_error(lambda: running.health_status("sesame.testing.v1.Unknown"))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    [line] = completed_calls(captured)
    assert (line["method"], line["code"]) == ("/grpc.health.v1.Health/Check", "NOT_FOUND")


def test_a_response_stream_is_logged_once_when_it_finishes(start_server: StartServer) -> None:
    running = start_server()

    with structlog.testing.capture_logs() as captured:
        responses = list(running.unary_stream("Count")(StringValue(value="3"), timeout=WAIT_S))

    assert [response.value for response in responses] == ["0", "1", "2"]
    [line] = completed_calls(captured)
    assert (line["method"], line["code"]) == (f"/{PROBE_SERVICE}/Count", "OK")


def test_the_request_id_comes_from_the_request_message_first(start_server: StartServer) -> None:
    running = start_server()
    identify = running.unary("Identify", error_details_pb2.RequestInfo)

    with structlog.testing.capture_logs() as captured:
        identify(
            error_details_pb2.RequestInfo(request_id="from-message"),
            metadata=(("x-request-id", "from-header"),),
            timeout=WAIT_S,
        )
        identify(
            error_details_pb2.RequestInfo(),
            metadata=(("x-request-id", "from-header"),),
            timeout=WAIT_S,
        )
        identify(error_details_pb2.RequestInfo(), timeout=WAIT_S)

    assert [line["request_id"] for line in completed_calls(captured)] == [
        "from-message",
        "from-header",
        "",
    ]


# Metrics


def test_metrics_count_each_call_by_service_method_and_code(start_server: StartServer) -> None:
    running = start_server()
    ok_labels = {"service": PROBE_SERVICE, "method": "Echo", "code": "OK"}
    rejected_labels = {"service": PROBE_SERVICE, "method": "Reject", "code": "INVALID_ARGUMENT"}

    def handled(labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value("sesame_grpc_server_handled_total", labels) or 0.0

    def timed(labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value("sesame_grpc_server_handling_seconds_count", labels) or 0.0

    ok_before = handled(ok_labels)
    rejected_before = handled(rejected_labels)
    timed_before = timed(ok_labels)
    running.unary("Echo")(StringValue(value="hi"), timeout=WAIT_S)
    running.unary("Echo")(StringValue(value="hi"), timeout=WAIT_S)
    call_error(lambda: running.unary("Reject")(StringValue(), timeout=WAIT_S))

    assert handled(ok_labels) - ok_before == 2
    assert handled(rejected_labels) - rejected_before == 1
    assert timed(ok_labels) - timed_before == 2


# Limits


def test_a_call_beyond_the_concurrency_limit_gets_resource_exhausted(
    start_server: StartServer,
) -> None:
    running = start_server({"SESAME_MAX_CONCURRENT_RPCS": "1"})
    blocked = running.unary("Block", Empty).future(Empty(), timeout=WAIT_S)
    assert running.probe.entered.wait(WAIT_S)

    error = call_error(lambda: running.unary("Echo")(StringValue(value="hi"), timeout=WAIT_S))

    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    running.probe.release.set()
    blocked.result(timeout=WAIT_S)


def test_an_oversized_request_gets_resource_exhausted(start_server: StartServer) -> None:
    running = start_server({"SESAME_MAX_MESSAGE_BYTES": "1024"})

    error = call_error(lambda: running.unary("Echo")(StringValue(value="x" * 2048), timeout=WAIT_S))

    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert running.unary("Echo")(StringValue(value="small"), timeout=WAIT_S)


# Graceful stop


def test_health_reports_not_serving_once_a_graceful_stop_begins(
    start_server: StartServer,
) -> None:
    running = start_server()
    health: Any = health_pb2_grpc.HealthStub(running.channel)
    updates = health.Watch(health_pb2.HealthCheckRequest(service=PROBE_SERVICE), timeout=WAIT_S)
    assert next(updates).status == SERVING

    stopping = threading.Thread(target=stop_gracefully, args=(running.created, 0.2))
    stopping.start()

    assert next(updates).status == NOT_SERVING
    stopping.join(WAIT_S)
    assert not stopping.is_alive()
    updates.cancel()


def test_the_stopping_hook_runs_once_health_reports_not_serving_while_calls_are_answered(
    start_server: StartServer,
) -> None:
    running = start_server()
    seen_while_stopping: list[object] = []

    def on_stopping() -> None:
        seen_while_stopping.append(running.health_status(""))
        seen_while_stopping.append(running.unary("Echo")(StringValue(value="hi"), timeout=WAIT_S))

    stop_gracefully(running.created, 0.2, on_stopping=on_stopping)

    assert seen_while_stopping == [NOT_SERVING, serialized(StringValue(value="hi"))]
