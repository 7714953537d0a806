"""Whether the services this one calls answer, for its health service and its metrics.

A `DependencyWatch` asks each dependency's standard health service, over the very channel the
service's own calls use, every `interval_s` with a deadline of its own, and reports the answer:
SERVING counts as up; NOT_SERVING, a refused or dropped connection and a deadline that ran out
(a stalled connection) count as down. The health service shows each dependency under
`dependency:<its service name>` (`services.common.runtime.HealthBook`), and the gauge
`sesame_dependency_serving{dependency=...}` follows it. Nothing else changes: calls that need a
dependency that is down still fail fast on their own deadlines, and once it answers again the
same channel reconnects, with no restart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import Gauge

from services.common.periodic import PeriodicTask

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

DEPENDENCY_SERVING = Gauge(
    "sesame_dependency_serving",
    "Whether a service this one calls answered its last health check (1) or not (0).",
    ["dependency"],
    multiprocess_mode="livemin",
)


@dataclass(frozen=True)
class Dependency:
    """A service this one calls: its full gRPC name and the channel the calls go over."""

    service_name: str
    channel: grpc.Channel


Report = Callable[[str, bool], None]


def answers(dependency: Dependency, timeout_s: float) -> bool:
    """Whether the dependency's health service says SERVING within `timeout_s`."""
    stub = health_pb2_grpc.HealthStub(dependency.channel)
    request = health_pb2.HealthCheckRequest(service=dependency.service_name)
    try:
        # The published type stub of HealthStub lists no methods.
        reply = stub.Check(request, timeout=timeout_s)  # type: ignore[attr-defined]
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


class DependencyWatch:
    """Checks every dependency every `interval_s` and reports each change (and the first
    answer) to `report(service_name, serving)`."""

    def __init__(
        self,
        dependencies: Sequence[Dependency],
        report: Report,
        *,
        interval_s: float,
        timeout_s: float,
    ) -> None:
        self._dependencies = tuple(dependencies)
        self._report = report
        self._timeout_s = timeout_s
        self._known: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._task = PeriodicTask("dependency-watch", interval_s, self.check_now)

    def check_now(self) -> dict[str, bool]:
        """Checks every dependency once; returns what each answered."""
        with self._lock:
            answered = {
                dependency.service_name: answers(dependency, self._timeout_s)
                for dependency in self._dependencies
            }
            for name, serving in answered.items():
                DEPENDENCY_SERVING.labels(dependency=name).set(int(serving))
                if self._known.get(name) != serving:
                    log.info("dependency_health_changed", dependency=name, serving=serving)
                    self._report(name, serving)
                    self._known[name] = serving
            return answered

    def start(self) -> None:
        """Checks once at once, then every interval on a daemon thread."""
        self.check_now()
        self._task.start()

    def stop(self) -> None:
        self._task.stop()
