"""Connections are aged out when asked, so long-lived clients spread over new replicas."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.server import create_server
from services.common.settings import ServerSettings, load_settings

WAIT_S = 10.0


def server_with(environment: dict[str, str]) -> Iterator[int]:
    created = create_server(load_settings(ServerSettings, environment), [])
    created.server.start()
    yield created.port
    created.server.stop(0).wait()


@pytest.fixture
def ageing_port() -> Iterator[int]:
    yield from server_with({"SESAME_MAX_CONNECTION_AGE_S": "0.3", "SESAME_GRACE_PERIOD_S": "0.1"})


@pytest.fixture
def keeping_port() -> Iterator[int]:
    yield from server_with({})


def connection_dropped_within(port: int, wait_s: float) -> bool:
    """Whether a connection that served a call is closed by the server within `wait_s`."""
    dropped = threading.Event()
    was_ready = threading.Event()

    def watch(state: grpc.ChannelConnectivity) -> None:
        if state is grpc.ChannelConnectivity.READY:
            was_ready.set()
        elif was_ready.is_set() and state is grpc.ChannelConnectivity.IDLE:
            dropped.set()

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        channel.subscribe(watch)
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=WAIT_S)
        result = dropped.wait(wait_s)
        channel.unsubscribe(watch)
    return result


def test_a_connection_older_than_the_limit_is_closed_by_the_server(ageing_port: int) -> None:
    assert connection_dropped_within(ageing_port, WAIT_S)


def test_without_a_limit_the_connection_stays(keeping_port: int) -> None:
    assert not connection_dropped_within(keeping_port, 1.0)
