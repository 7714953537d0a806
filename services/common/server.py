"""Building and running a Sesame gRPC server on synchronous gRPC (the ledger, the waiver).

A service describes what it adds to the server with a `ServiceRegistration`
(`services.common.runtime`), then either runs it in the foreground with `serve` (the process
entry point) or builds it with `create_server` (tests, and processes that run more than one
thing)::

    registration = ServiceRegistration(
        name="sesame.ledger.v1.LedgerService",
        add_to_server=lambda server: add_LedgerServiceServicer_to_server(servicer, server),
    )
    serve(load_settings(LedgerSettings), [registration], service_name="ledger")

`create_server` returns a `SesameServer`, bound but not yet started, whose `health` sets what
the standard health service reports::

    created = create_server(settings, [registration])
    created.server.start()
    created.health.set_serving("sesame.ledger.v1.LedgerService", True)

Every server also runs the standard health service (grpc.health.v1.Health, one status per
registered service plus the overall status "") and server reflection listing all of them.
A registration with `initially_serving=False` (a service that must warm up first) reports
NOT_SERVING until it calls `health.set_serving(name, True)`; the overall status is SERVING
only while every registered service is.

`services.common.aio_server` builds and runs the same server on grpc.aio; what the two share
is in `services.common.runtime`, and this module only adapts it to the synchronous API.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from services.common.interceptors import default_interceptors
from services.common.reflection import enable_reflection
from services.common.runtime import (
    HealthBook,
    ServiceRegistration,
    SesameServer,
    access_guard,
    bind_service_port,
    channel_options,
    freeze_start_up_objects,
    listen_address,
    log_server_started,
    log_server_stopping,
    log_start_failed,
    run_serving_process,
    service_names,
)
from services.common.settings import ServerSettings
from services.common.stop_signals import StopSignals


class ServiceHealth:
    """What the standard health service reports, per registered service and overall."""

    def __init__(self, services: Sequence[ServiceRegistration]) -> None:
        self.servicer = health.HealthServicer()
        self._book = HealthBook(services)
        # Held while publishing, so that changes reach the servicer in the order they happen.
        self._lock = threading.Lock()
        with self._lock:
            self._publish(self._book.take_changes())

    def set_serving(self, service_name: str, serving: bool) -> None:
        """Ignored once shutdown has begun: a stopping server never reports SERVING again."""
        with self._lock:
            self._publish(self._book.set_serving(service_name, serving))

    def set_dependency_serving(self, service_name: str, serving: bool) -> None:
        """Whether a service this one calls answers (`services.common.dependency_health`)."""
        with self._lock:
            self._publish(self._book.set_dependency_serving(service_name, serving))

    def begin_shutdown(self) -> None:
        """Report NOT_SERVING for everything from now on, so clients move elsewhere."""
        self.servicer.enter_graceful_shutdown()

    def _publish(self, changes: dict[str, int]) -> None:
        for service_name, status in changes.items():
            self.servicer.set(service_name, status)


def create_server(
    settings: ServerSettings,
    services: Sequence[ServiceRegistration],
    *,
    share_port: bool = False,
) -> SesameServer[grpc.Server, ServiceHealth]:
    """Build the server with the given services, health and reflection; bind, don't start.

    `share_port` binds with SO_REUSEPORT, for one of several worker processes on one port
    (see `channel_options`).
    """
    names = service_names(services)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="grpc-worker"),
        interceptors=default_interceptors(access_guard(settings)),
        options=channel_options(settings, share_port),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    for registration in services:
        registration.add_to_server(server)
    service_health = ServiceHealth(services)
    health_pb2_grpc.add_HealthServicer_to_server(service_health.servicer, server)
    enable_reflection(server, names)
    port = bind_service_port(server, settings)
    probe_server, probe_port = _health_probe_server(settings, service_health, share_port)
    return SesameServer(server, port, service_health, probe_server, probe_port)


def _health_probe_server(
    settings: ServerSettings, service_health: ServiceHealth, share_port: bool
) -> tuple[grpc.Server | None, int]:
    """The plaintext listener for probes that cannot speak TLS: the health service alone, on a
    pool of its own so that probes are answered while the service's workers are busy."""
    if settings.health_port == 0:
        return None, 0
    server = grpc.server(
        ThreadPoolExecutor(max_workers=2, thread_name_prefix="grpc-health"),
        options=channel_options(settings, share_port),
    )
    health_pb2_grpc.add_HealthServicer_to_server(service_health.servicer, server)
    port = server.add_insecure_port(listen_address(settings.host, settings.health_port))
    return server, port


def stop_gracefully(
    created: SesameServer[grpc.Server, ServiceHealth],
    grace_period_s: float,
    *,
    on_stopping: Callable[[], None] | None = None,
) -> None:
    """Report NOT_SERVING, run `on_stopping`, then refuse new calls and give running calls up
    to the grace period. Returns once the server has stopped."""
    created.health.begin_shutdown()
    try:
        if on_stopping is not None:
            on_stopping()
    finally:
        created.server.stop(grace_period_s).wait()
        if created.probe_server is not None:
            created.probe_server.stop(0).wait()


def serve(
    settings: ServerSettings,
    services: Sequence[ServiceRegistration],
    *,
    service_name: str | None = None,
    before_start: Callable[[], None] | None = None,
    on_started: Callable[[SesameServer[grpc.Server, ServiceHealth]], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
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
    `on_stopping` runs as soon as a stop signal arrives, once health reports NOT_SERVING and
    before the grace period begins: it ends what would otherwise keep calls running for all of
    it (the streams of a service that has no end of its own), so that they end with the status
    the service chooses rather than be cancelled when the grace period runs out.
    `on_stop` runs after the server has stopped (or failed to start), to release what the
    servicers used.
    `as_worker` runs the server as one of several worker processes: it shares the port, and
    the supervising process serves the metrics of all workers (`services.common.workers`).
    """

    def serve_until_stopped(stop_signals: StopSignals) -> None:
        if before_start is not None:
            _start_up_step(before_start)
        created = create_server(settings, services, share_port=as_worker)
        created.server.start()
        if created.probe_server is not None:
            created.probe_server.start()
        log_server_started(services, settings, created.port, created.probe_port)
        if on_started is not None:
            _start_up_step(lambda: on_started(created), created.server)
        freeze_start_up_objects()
        received = stop_signals.wait()
        log_server_stopping(received, settings)
        stop_gracefully(created, settings.grace_period_s, on_stopping=on_stopping)

    run_serving_process(
        settings,
        services,
        serve_until_stopped,
        service_name=service_name,
        on_stop=on_stop,
        as_worker=as_worker,
    )


def _start_up_step(step: Callable[[], None], started: grpc.Server | None = None) -> None:
    """Runs one start-up step; if it fails, stops the server started so far and lets the
    error through."""
    try:
        step()
    except BaseException:
        log_start_failed()
        if started is not None:
            started.stop(0).wait()
        raise
