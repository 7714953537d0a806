"""The asyncio server runtime on 127.0.0.1, with a probe service of well-known protobuf types.

The same promises as the synchronous runtime (test_grpc_server_runtime.py) for the handlers an
asyncio service has: coroutines and async generators.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import structlog
from google.protobuf import wrappers_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from services.common.aio_server import AioSesameServer, create_aio_server, stop_aio_gracefully
from services.common.errors import InvalidArgument
from services.common.grpc_errors import error_details
from services.common.runtime import ServiceRegistration
from services.common.settings import ServerSettings, load_settings
from tests.support.aio import AioServerThread

PROBE_SERVICE = "sesame.testing.v1.AsyncProbe"
SECRET = "password=hunter2 at db.internal"
WAIT_S = 5.0

StringValue = wrappers_pb2.StringValue
Context = grpc.aio.ServicerContext[Any, Any]


class AsyncProbe:
    async def echo(self, request: StringValue, context: Context) -> StringValue:
        return request

    async def reject(self, request: StringValue, context: Context) -> StringValue:
        raise InvalidArgument.for_field("value", "must not be empty", reason="VALUE_REQUIRED")

    async def crash(self, request: StringValue, context: Context) -> StringValue:
        raise RuntimeError(SECRET)

    async def abort(self, request: StringValue, context: Context) -> StringValue:
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such probe")

    async def unbuilt(self, request: StringValue, context: Context) -> StringValue:
        raise NotImplementedError

    async def count_then_reject(
        self, request: StringValue, context: Context
    ) -> AsyncIterator[StringValue]:
        yield StringValue(value="0")
        raise InvalidArgument.for_field("value", "too high")

    async def echo_each(
        self, requests: AsyncIterator[StringValue], context: Context
    ) -> AsyncIterator[StringValue]:
        async for request in requests:
            if request.value == "crash":
                raise RuntimeError(SECRET)
            yield request

    def registration(self, *, initially_serving: bool) -> ServiceRegistration:
        def unary(behavior: Callable[..., Any]) -> grpc.RpcMethodHandler[Any, Any]:
            return grpc.unary_unary_rpc_method_handler(
                behavior, StringValue.FromString, StringValue.SerializeToString
            )

        handler = grpc.method_handlers_generic_handler(
            PROBE_SERVICE,
            {
                "Echo": unary(self.echo),
                "Reject": unary(self.reject),
                "Crash": unary(self.crash),
                "Abort": unary(self.abort),
                "Unbuilt": unary(self.unbuilt),
                "CountThenReject": grpc.unary_stream_rpc_method_handler(
                    self.count_then_reject, StringValue.FromString, StringValue.SerializeToString
                ),
                "EchoEach": grpc.stream_stream_rpc_method_handler(
                    self.echo_each, StringValue.FromString, StringValue.SerializeToString
                ),
            },
        )
        return ServiceRegistration(
            PROBE_SERVICE,
            lambda server: server.add_generic_rpc_handlers((handler,)),
            initially_serving=initially_serving,
        )


@dataclass
class Running:
    created: AioSesameServer
    server_thread: AioServerThread
    channel: grpc.Channel

    def unary(self, method: str) -> grpc.UnaryUnaryMultiCallable[Any, Any]:
        return self.channel.unary_unary(
            f"/{PROBE_SERVICE}/{method}",
            request_serializer=StringValue.SerializeToString,
            response_deserializer=StringValue.FromString,
        )

    def health_status(self, service: str) -> int:
        stub: Any = health_pb2_grpc.HealthStub(self.channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=WAIT_S)
        return int(response.status)


StartServer = Callable[..., Running]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    started: list[Running] = []

    def start(*, initially_serving: bool = True) -> Running:
        settings = load_settings(ServerSettings, {"SESAME_PORT": "0"})
        registration = AsyncProbe().registration(initially_serving=initially_serving)
        server_thread = AioServerThread()
        created = server_thread.run(create_aio_server(settings, [registration]))
        server_thread.run(created.server.start())
        channel = grpc.insecure_channel(f"127.0.0.1:{created.port}")
        started.append(Running(created, server_thread, channel))
        return started[-1]

    yield start
    for running in started:
        running.channel.close()
        running.server_thread.run(running.created.server.stop(None))
        running.server_thread.close()


def call_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def wait_for_completed_calls(captured: list[MutableMapping[str, Any]], count: int) -> list[Any]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        lines = [line for line in captured if line["event"] == "rpc_completed"]
        if len(lines) >= count:
            return lines
        time.sleep(0.01)
    return lines


def test_a_domain_error_becomes_invalid_argument_naming_the_field(
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
    assert SECRET not in (error.details() or "")
    assert [line["method"] for line in captured if line["event"] == "rpc_handler_crashed"] == [
        f"/{PROBE_SERVICE}/Crash"
    ]


def test_an_abort_by_the_servicer_passes_through_untouched(start_server: StartServer) -> None:
    running = start_server()

    error = call_error(lambda: running.unary("Abort")(StringValue(), timeout=WAIT_S))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "no such probe"


def test_a_method_not_built_yet_answers_unimplemented(start_server: StartServer) -> None:
    running = start_server()

    error = call_error(lambda: running.unary("Unbuilt")(StringValue(), timeout=WAIT_S))

    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_domain_error_in_the_middle_of_a_response_stream_is_translated(
    start_server: StartServer,
) -> None:
    running = start_server()
    call = running.channel.unary_stream(
        f"/{PROBE_SERVICE}/CountThenReject",
        request_serializer=StringValue.SerializeToString,
        response_deserializer=StringValue.FromString,
    )
    received: list[str] = []

    def read_all() -> None:
        received.extend(message.value for message in call(StringValue(), timeout=WAIT_S))

    error = call_error(read_all)

    assert received == ["0"]
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_crash_in_a_bidirectional_stream_becomes_internal(start_server: StartServer) -> None:
    running = start_server()
    call = running.channel.stream_stream(
        f"/{PROBE_SERVICE}/EchoEach",
        request_serializer=StringValue.SerializeToString,
        response_deserializer=StringValue.FromString,
    )
    requests = [StringValue(value="a"), StringValue(value="crash")]

    error = call_error(lambda: list(call(iter(requests), timeout=WAIT_S)))

    assert error.code() == grpc.StatusCode.INTERNAL
    assert SECRET not in (error.details() or "")


def test_each_call_writes_one_access_log_line_with_its_code(start_server: StartServer) -> None:
    running = start_server()

    with structlog.testing.capture_logs() as captured:
        running.unary("Echo")(StringValue(value="hi"), timeout=WAIT_S)
        call_error(lambda: running.unary("Reject")(StringValue(), timeout=WAIT_S))
        call_error(lambda: running.unary("Crash")(StringValue(), timeout=WAIT_S))
        # An abort sends the status at once; the line is written as the handler unwinds,
        # which may be just after the caller has its answer.
        lines = wait_for_completed_calls(captured, 3)
    assert [(line["method"].rsplit("/", 1)[1], line["code"]) for line in lines] == [
        ("Echo", "OK"),
        ("Reject", "INVALID_ARGUMENT"),
        ("Crash", "INTERNAL"),
    ]
    assert all(line["duration_ms"] >= 0 and line["peer"] for line in lines)


def test_health_is_not_serving_until_the_service_says_so(start_server: StartServer) -> None:
    running = start_server(initially_serving=False)
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    serving = health_pb2.HealthCheckResponse.SERVING
    assert running.health_status(PROBE_SERVICE) == not_serving
    assert running.health_status("") == not_serving

    running.server_thread.run(running.created.health.set_serving(PROBE_SERVICE, True))

    assert running.health_status(PROBE_SERVICE) == serving
    assert running.health_status("") == serving


def test_reflection_lists_the_services_health_and_reflection(start_server: StartServer) -> None:
    running = start_server()

    services = ProtoReflectionDescriptorDatabase(running.channel).get_services()

    assert set(services) >= {
        PROBE_SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }


def test_a_graceful_stop_reports_not_serving_first(start_server: StartServer) -> None:
    running = start_server()
    health = running.created.health

    running.server_thread.run(health.begin_shutdown())

    assert running.health_status("") == health_pb2.HealthCheckResponse.NOT_SERVING


def test_the_stopping_hook_runs_once_health_reports_not_serving_while_calls_are_answered(
    start_server: StartServer,
) -> None:
    running = start_server()
    seen_while_stopping: list[object] = []

    def on_stopping() -> None:
        seen_while_stopping.append(running.health_status(""))
        seen_while_stopping.append(running.unary("Echo")(StringValue(value="hi"), timeout=WAIT_S))

    running.server_thread.run(stop_aio_gracefully(running.created, 0.2, on_stopping=on_stopping))

    assert seen_while_stopping == [
        health_pb2.HealthCheckResponse.NOT_SERVING,
        StringValue(value="hi"),
    ]
