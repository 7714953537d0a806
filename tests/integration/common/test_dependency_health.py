"""A service's watch on the services it calls: up while the dependency's health service says
SERVING, down when it says NOT_SERVING, when the connection is dropped or stalled (through the
fault proxy), and up again once it answers, over the same channel."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.common.channels import client_channel
from services.common.dependency_health import Dependency, DependencyWatch
from tests.support.fault_proxy import FaultProxy
from tests.support.waiting import until

NAME = "test.Ledger"
RECONNECT_WAIT_S = 20.0


@pytest.fixture
def dependency() -> Iterator[tuple[health.HealthServicer, FaultProxy]]:
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    servicer.set(NAME, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    proxy = FaultProxy(f"127.0.0.1:{port}").start()
    try:
        yield servicer, proxy
    finally:
        proxy.stop()
        server.stop(0)


def test_the_watch_follows_the_dependency_and_reports_each_change_once(
    dependency: tuple[health.HealthServicer, FaultProxy],
) -> None:
    servicer, proxy = dependency
    reported: list[tuple[str, bool]] = []
    with client_channel(proxy.address, None) as channel:
        watch = DependencyWatch(
            [Dependency(NAME, channel)],
            lambda name, serving: reported.append((name, serving)),
            interval_s=60,
            timeout_s=0.5,
        )
        seen = [watch.check_now()[NAME]]
        seen.append(watch.check_now()[NAME])
        servicer.set(NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
        seen.append(watch.check_now()[NAME])
        servicer.set(NAME, health_pb2.HealthCheckResponse.SERVING)
        seen.append(watch.check_now()[NAME])
        proxy.stall()
        seen.append(watch.check_now()[NAME])
        proxy.heal()
        seen.append(watch.check_now()[NAME])
        proxy.drop()
        seen.append(watch.check_now()[NAME])
        proxy.heal()
        recovered = until(lambda: watch.check_now()[NAME], RECONNECT_WAIT_S, interval_s=0.1)

    assert seen == [True, True, False, True, False, True, False]
    assert recovered, "the same channel never reached the dependency again"
    assert reported == [
        (NAME, serving) for serving in (True, False, True, False, True, False, True)
    ]
