"""Building and running a Sesame gRPC server.

A service describes what it adds to the server with `ServiceRegistration`, then either
runs it in the foreground with `serve` (the process entry point) or builds it with
`create_server` (tests, and processes that run more than one thing)::

    registration = ServiceRegistration(
        name="sesame.ledger.v1.LedgerService",
        add_to_server=lambda server: add_LedgerServiceServicer_to_server(servicer, server),
    )
    serve(load_settings(LedgerSettings), [registration], service_name="ledger")

`create_server` returns a `SesameServer`, not yet started. It unpacks as `server, port`,
and its `health` attribute sets what the standard health service reports::

    created = create_server(settings, [registration])
    server, port = created
    created.health.set_serving("sesame.score.v1.ScoreService", True)

`services.common.aio_server` builds and runs the same server on asyncio (grpc.aio), from the
same registrations and settings.

Every server also runs the standard health service (grpc.health.v1.Health, one status per
registered service plus the overall status "") and server reflection listing all of them.
A registration with `initially_serving=False` (a service that must warm up first) reports
NOT_SERVING until it calls `health.set_serving(name, True)`; the overall status is SERVING
only while every registered service is.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Self

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

from services.common.interceptors import default_interceptors
from services.common.logging import configure_logging
from services.common.settings import ServerSettings
from services.common.stop_signals import handling_stop_signals
from services.common.workers import PROMETHEUS_MULTIPROC_VARIABLE

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

OVERALL_HEALTH = ""


# What a servicer is added to: the synchronous server, or the asyncio one (`aio_server`).
GrpcServer = grpc.Server | grpc.aio.Server


@dataclass(frozen=True)
class ServiceRegistration:
    """One gRPC service to run: its full name and how to add its servicer to a server."""

    name: str  # the full service name, e.g. "sesame.ledger.v1.LedgerService"
    add_to_server: Callable[[GrpcServer], None]
    # False for a service that must warm up first; it then calls `health.set_serving`.
    initially_serving: bool = True


def health_changes(serving: Mapping[str, bool], reported: Mapping[str, int]) -> dict[str, int]:
    """The statuses to report that differ from those `reported` so far: each service's, and
    the overall one ("", SERVING only while every service is). Watchers hear of changes only."""
    statuses = {name: _health_status(is_serving) for name, is_serving in serving.items()}
    statuses[OVERALL_HEALTH] = _health_status(all(serving.values()))
    return {name: status for name, status in statuses.items() if reported.get(name) != status}


def _health_status(serving: bool) -> int:
    return int(
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )


class ServiceHealth:
    """What the standard health service reports, per registered service and overall."""

    def __init__(self, service_names: Sequence[str], initially_serving: Sequence[bool]) -> None:
        self.servicer = health.HealthServicer()
        self._lock = threading.Lock()
        self._serving = dict(zip(service_names, initially_serving, strict=True))
        self._reported: dict[str, int] = {}
        self._publish()

    def set_serving(self, service_name: str, serving: bool) -> None:
        """Ignored once shutdown has begun: a stopping server never reports SERVING again."""
        with self._lock:
            if service_name not in self._serving:
                raise KeyError(f"{service_name!r} is not a service of this server")
            self._serving[service_name] = serving
            self._publish()

    def begin_shutdown(self) -> None:
        """Report NOT_SERVING for everything from now on, so clients move elsewhere."""
        self.servicer.enter_graceful_shutdown()

    def _publish(self) -> None:
        for service_name, status in health_changes(self._serving, self._reported).items():
            self.servicer.set(service_name, status)
            self._reported[service_name] = status


class SesameServer(tuple[grpc.Server, int]):
    """A built server: unpacks as `server, port`; `health` sets what it reports."""

    health: ServiceHealth

    def __new__(cls, server: grpc.Server, port: int, health: ServiceHealth) -> Self:
        created = super().__new__(cls, (server, port))
        created.health = health
        return created

    @property
    def server(self) -> grpc.Server:
        return self[0]

    @property
    def port(self) -> int:
        return self[1]

    def stop_gracefully(self, grace_period_s: float) -> None:
        """Report NOT_SERVING, refuse new calls, give running calls up to the grace period.

        Returns once the server has stopped.
        """
        self.health.begin_shutdown()
        self.server.stop(grace_period_s).wait()


def create_server(
    settings: ServerSettings,
    services: Sequence[ServiceRegistration],
    *,
    share_port: bool = False,
) -> SesameServer:
    """Build the server with the given services, health and reflection; bind, don't start.

    `share_port` binds with SO_REUSEPORT, for one of several worker processes on one port
    (see `services.common.workers`). Otherwise the port is this process's alone: gRPC turns
    SO_REUSEPORT on by default, which would let a forgotten second process bind the same port
    and quietly take part of the traffic; failing to start is the safer outcome.
    """
    service_names = [registration.name for registration in services]
    require_unique(service_names)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="grpc-worker"),
        interceptors=default_interceptors(),
        options=channel_options(settings, share_port),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    for registration in services:
        registration.add_to_server(server)

    service_health = ServiceHealth(
        service_names, [registration.initially_serving for registration in services]
    )
    health_pb2_grpc.add_HealthServicer_to_server(service_health.servicer, server)
    reflection.enable_server_reflection(
        (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(listen_address(settings.host, settings.port))
    return SesameServer(server, port, service_health)


def channel_options(settings: ServerSettings, share_port: bool) -> list[tuple[str, int]]:
    options = [
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 1 if share_port else 0),
    ]
    if settings.max_connection_age_s > 0:
        # A client keeps its connection, and so its server, for as long as it lives; ageing
        # connections out (GOAWAY, then reconnect) lets new replicas and workers get traffic.
        options += [
            ("grpc.max_connection_age_ms", round(settings.max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", round(settings.grace_period_s * 1000)),
        ]
    return options


def serve(
    settings: ServerSettings,
    services: Sequence[ServiceRegistration],
    *,
    service_name: str | None = None,
    before_start: Callable[[], None] | None = None,
    on_started: Callable[[SesameServer], None] | None = None,
    on_stop: Callable[[], None] | None = None,
    as_worker: bool = False,
) -> None:
    """Run the server until SIGTERM or SIGINT, then stop gracefully; call from the main thread.

    `service_name` labels every log line (default: the registered service names).
    `before_start` runs before the port is bound, for work that must be done before any call
    can arrive (a worker joining a port its siblings already answer on).
    `on_started` runs once the server answers calls, for work that must follow it (a service
    that warms up while health reports NOT_SERVING, then sets SERVING); if it raises, the
    server stops and the error propagates, so the process exits non-zero.
    `on_stop` runs after the server has stopped, to release what the servicers used.
    `as_worker` runs the server as one of several worker processes: it shares the port, and
    the supervising process serves the metrics of all workers (`services.common.workers`).
    """
    service_names = [registration.name for registration in services]
    configure_logging(service_name or ",".join(service_names) or "sesame", settings.log_level)
    with handling_stop_signals() as stop_signals:
        if before_start is not None:
            _run_start_up_step(before_start, on_stop)
        metrics_endpoint = None if as_worker else start_metrics_endpoint(settings)
        created = create_server(settings, services, share_port=as_worker)
        created.server.start()
        log.info(
            "server_started",
            services=service_names,
            address=listen_address(settings.host, created.port),
            port=created.port,
        )
        if on_started is not None:
            _run_start_up_step(partial(on_started, created), on_stop, created)
        freeze_start_up_objects()
        received = stop_signals.wait()
        log.info("server_stopping", signal=received.name, grace_period_s=settings.grace_period_s)
        created.stop_gracefully(settings.grace_period_s)
        if on_stop is not None:
            on_stop()
        if metrics_endpoint is not None:
            metrics_endpoint()
    log.info("server_stopped")


def _run_start_up_step(
    step: Callable[[], None],
    on_stop: Callable[[], None] | None,
    started: SesameServer | None = None,
) -> None:
    """Runs one start-up step; if it fails, stops what was started and lets the error through."""
    try:
        step()
    except BaseException:
        log.exception("server_start_failed")
        if started is not None:
            started.stop_gracefully(0)
        if on_stop is not None:
            on_stop()
        raise


def freeze_start_up_objects() -> None:
    """Leaves everything alive after start-up out of the garbage collector's full passes.

    A started service holds tens of thousands of long-lived objects (modules, descriptors,
    a loaded model) that every full collection would traverse again: about 40 ms in the score
    service, a pause that every call in flight waits out (tail latency). Frozen, they are
    skipped. Objects made while serving are collected as usual.
    """
    gc.collect()
    gc.freeze()


def start_metrics_endpoint(settings: ServerSettings) -> Callable[[], None] | None:
    """Serves Prometheus metrics on the metrics port; returns how to stop, None when disabled.

    Under `services.common.workers` (PROMETHEUS_MULTIPROC_DIR set) it serves the sum of every
    worker's metrics.
    """
    if not settings.metrics_enabled:
        return None
    registry: CollectorRegistry = REGISTRY
    if os.environ.get(PROMETHEUS_MULTIPROC_VARIABLE):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    endpoint, _thread = start_http_server(
        settings.metrics_port, addr=settings.host, registry=registry
    )
    log.info(
        "metrics_endpoint_started", address=listen_address(settings.host, settings.metrics_port)
    )

    def stop() -> None:
        endpoint.shutdown()
        endpoint.server_close()

    return stop


def require_unique(service_names: Sequence[str]) -> None:
    duplicates = sorted({name for name in service_names if service_names.count(name) > 1})
    if duplicates:
        raise ValueError(f"services registered more than once: {', '.join(duplicates)}")


def listen_address(host: str, port: int) -> str:
    # An IPv6 host needs brackets to keep its colons apart from the port's.
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
