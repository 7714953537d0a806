"""What both server runtimes share, so that a service means the same on either.

`services.common.server` runs a service on synchronous gRPC (the ledger, the waiver) and
`services.common.aio_server` on grpc.aio (the score). Both build their server from the same
`ServiceRegistration`s and settings, and everything that does not depend on the runtime lives
here: the built server's shape (`SesameServer`), what the health service reports
(`HealthBook`), channel options and the listen address, the metrics endpoint, the freezing of
start-up objects, and the outline of a serving process (`run_serving_process`). What each call
goes through is shared the same way: `services.common.call_observation` (access log, metrics)
and `services.common.grpc_errors` (errors to statuses); reflection is
`services.common.reflection`.

What stays in the two runtime modules is only what their APIs make different: the health
servicer (synchronous or coroutines), how the server is started and stopped, and how the
process waits for a stop signal (the main thread, or the event loop).
"""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import grpc
import structlog
from grpc_health.v1 import health_pb2
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

from services.common.access import CallGuard, call_guard
from services.common.logging import configure_logging
from services.common.pseudonyms import configure_pseudonyms
from services.common.settings import ServerSettings
from services.common.stop_signals import StopSignals, handling_stop_signals
from services.common.tls import server_credentials
from services.common.tracing import configure_tracing, shutdown_tracing
from services.common.workers import PROMETHEUS_MULTIPROC_VARIABLE

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

OVERALL_HEALTH = ""
# What a dependency's status is reported under: "dependency:sesame.ledger.v1.LedgerService".
DEPENDENCY_HEALTH_PREFIX = "dependency:"

# What a servicer is added to: the synchronous server or the asyncio one.
GrpcServer = grpc.Server | grpc.aio.Server

ServerT = TypeVar("ServerT", grpc.Server, grpc.aio.Server)
HealthT = TypeVar("HealthT")


@dataclass(frozen=True)
class ServiceRegistration:
    """One gRPC service to run: its full name and how to add its servicer to a server."""

    name: str  # the full service name, e.g. "sesame.ledger.v1.LedgerService"
    add_to_server: Callable[[GrpcServer], None]
    # False for a service that must warm up first; it then calls `health.set_serving`.
    initially_serving: bool = True


@dataclass(frozen=True)
class SesameServer(Generic[ServerT, HealthT]):
    """A built server on either runtime: `create_server` and `create_aio_server` return it
    bound but not started.

    `server` is the gRPC server, `port` the port it bound (the one asked for, or the one the
    system chose for port 0), `health` sets what the standard health service reports.
    """

    server: ServerT
    port: int
    health: HealthT
    # The plaintext listener answering health alone (`SESAME_<SERVICE>_HEALTH_PORT`), if any:
    # started and stopped with `server`.
    probe_server: ServerT | None = None
    probe_port: int = 0


# ----------------------------------------------------------------------------------------------
# Health


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


def dependency_health_name(service_name: str) -> str:
    """The name a dependency's status is reported under, beside the server's own services."""
    return f"{DEPENDENCY_HEALTH_PREFIX}{service_name}"


class HealthBook:
    """Which registered services are serving, which dependencies answer, and what the health
    service was told so far.

    Each runtime's health object hands what `take_changes`, `set_serving` and
    `set_dependency_serving` return to its own health servicer, in order: those are exactly the
    statuses that changed. A dependency's status (`dependency_health_name`) says whether the
    service it calls answers its health check; it never changes the overall status, because
    the server still answers: reads of its own data, and for the rest a quick UNAVAILABLE that
    names the dependency. Taking every replica out of rotation while a dependency is down would
    turn that partial outage into a total one.
    """

    def __init__(self, services: Sequence[ServiceRegistration]) -> None:
        self._serving = {
            registration.name: registration.initially_serving for registration in services
        }
        self._dependencies: dict[str, bool] = {}
        self._reported: dict[str, int] = {}

    def set_serving(self, service_name: str, serving: bool) -> dict[str, int]:
        """Records the service's state; the statuses to publish because of it."""
        if service_name not in self._serving:
            raise KeyError(f"{service_name!r} is not a service of this server")
        self._serving[service_name] = serving
        return self.take_changes()

    def set_dependency_serving(self, service_name: str, serving: bool) -> dict[str, int]:
        """Records whether a dependency answers; the statuses to publish because of it."""
        self._dependencies[dependency_health_name(service_name)] = serving
        return self.take_changes()

    def take_changes(self) -> dict[str, int]:
        """The statuses not published yet, from now on counted as published."""
        changes = health_changes(self._serving, self._reported)
        for name, serving in self._dependencies.items():
            status = _health_status(serving)
            if self._reported.get(name) != status:
                changes[name] = status
        self._reported.update(changes)
        return changes


# ----------------------------------------------------------------------------------------------
# Building


def service_names(services: Sequence[ServiceRegistration]) -> list[str]:
    """The registered names, refusing a service registered twice."""
    names = [registration.name for registration in services]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"services registered more than once: {', '.join(duplicates)}")
    return names


def channel_options(settings: ServerSettings, share_port: bool) -> list[tuple[str, int]]:
    """The server's options. `share_port` binds with SO_REUSEPORT, for one of several worker
    processes on one port (see `services.common.workers`). Otherwise the port is this process's
    alone: gRPC turns SO_REUSEPORT on by default, which would let a forgotten second process
    bind the same port and quietly take part of the traffic; failing to start is safer."""
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


def access_guard(settings: ServerSettings) -> CallGuard | None:
    """The access check of a TLS server (`services.common.access`); a plaintext server has no
    caller identity to check, and says so when it starts."""
    if settings.tls_files is None:
        return None
    return call_guard(settings.access_policy_file, settings.token_public_key_file)


def bind_service_port(server: GrpcServer, settings: ServerSettings) -> int:
    """Binds the service's port: mutual TLS from the settings' files, or plaintext when the
    settings ask for it. The bound port."""
    address = listen_address(settings.host, settings.port)
    files = settings.tls_files
    if files is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, server_credentials(files))


def listen_address(host: str, port: int) -> str:
    # An IPv6 host needs brackets to keep its colons apart from the port's.
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ----------------------------------------------------------------------------------------------
# Serving


def run_serving_process(
    settings: ServerSettings,
    services: Sequence[ServiceRegistration],
    serve_until_stopped: Callable[[StopSignals], None],
    *,
    service_name: str | None,
    on_stop: Callable[[], None] | None,
    as_worker: bool,
) -> None:
    """The outline of a serving process, the same on both runtimes.

    Configures logging (labelled `service_name`, by default the registered service names),
    starts the metrics endpoint unless the process is one of several workers (the supervisor
    serves theirs), and calls `serve_until_stopped`, which builds, starts and runs the server
    until a stop signal and stops it. `on_stop` then releases what the servicers used, whether
    the server stopped or failed to start.
    """
    label = service_name or ",".join(registration.name for registration in services) or "sesame"
    configure_logging(label, settings.log_level)
    configure_pseudonyms(settings.pseudonym_key_file)
    configure_service_tracing(label, settings)
    with handling_stop_signals() as stop_signals:
        metrics_endpoint = None if as_worker else start_metrics_endpoint(settings)
        try:
            serve_until_stopped(stop_signals)
        finally:
            if on_stop is not None:
                on_stop()
            if metrics_endpoint is not None:
                metrics_endpoint()
            shutdown_tracing()
    log.info("server_stopped")


def configure_service_tracing(label: str, settings: ServerSettings) -> None:
    """Turns tracing on when the settings name an OTLP endpoint (`services.common.tracing`).
    A service calls it before it opens its channels to other services, so that they carry
    the trace; serving processes call it again, which changes nothing."""
    configure_tracing(f"sesame-{label}", settings.otlp_endpoint)


def log_server_started(
    services: Sequence[ServiceRegistration], settings: ServerSettings, port: int, probe_port: int
) -> None:
    log.info(
        "server_started",
        services=[registration.name for registration in services],
        address=listen_address(settings.host, port),
        port=port,
        transport="plaintext" if settings.tls_files is None else "mutual_tls",
    )
    if settings.tls_files is None:
        log.warning(
            "plaintext_transport",
            message="PLAINTEXT: no TLS and no caller identity; every caller may call every method.",
            asked_for_by_setting=settings.plaintext,
        )
    if probe_port:
        log.info(
            "health_probe_listener_started",
            address=listen_address(settings.host, probe_port),
            transport="plaintext",
            serves="grpc.health.v1.Health only",
        )


def log_server_stopping(received: signal.Signals, settings: ServerSettings) -> None:
    log.info("server_stopping", signal=received.name, grace_period_s=settings.grace_period_s)


def log_start_failed() -> None:
    """Logs the error being handled: call from an except block of a failed start-up step."""
    log.exception("server_start_failed")


def freeze_start_up_objects() -> None:
    """Leaves everything alive after start-up out of the garbage collector's full passes.

    A started service holds tens of thousands of long-lived objects (modules, descriptors,
    a loaded model) that every full collection would traverse again, a pause that every call
    in flight waits out and so shows in tail latency. Frozen, they are skipped. Objects made
    while serving are collected as usual.
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
