"""Building and running a Sesame gRPC server on asyncio (grpc.aio): the score service.

The counterpart of `services.common.server` for a service whose calls are mostly short and
CPU-bound: one event loop runs every call, so a call answered without blocking (a score from
the cache) is handled where it arrives, with no hand-off to a worker thread and back. Blocking
work (a read from another service, a model run) belongs in `asyncio.to_thread`, which runs on
the server's worker threads (`SESAME_<SVC>_MAX_WORKERS`). `make bench-score` measures this
runtime against the synchronous one on the same echo service; the README has the figures.

Everything that does not depend on the runtime is shared with the synchronous server
(`services.common.runtime`): registrations, settings, the server's shape, what health reports,
reflection, connection ageing, port sharing for workers, metrics, the outline of a serving
process, and what each call goes through (their asyncio interceptors). What is here adapts
them to grpc.aio, whose health servicer, start and stop are coroutines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from services.common.aio_interceptors import default_aio_interceptors
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
from services.common.stop_signals import POLL_INTERVAL_S, StopSignals


class AioServiceHealth:
    """What the standard health service reports, per registered service and overall."""

    def __init__(self, services: Sequence[ServiceRegistration]) -> None:
        self.servicer = health.aio.HealthServicer()
        self._book = HealthBook(services)
        # Held while publishing, so that changes reach the servicer in the order they happen
        # even when the coroutines that make them interleave.
        self._lock = asyncio.Lock()

    async def publish(self) -> None:
        """Publishes the statuses not published yet (at first, all of them)."""
        async with self._lock:
            await self._publish(self._book.take_changes())

    async def set_serving(self, service_name: str, serving: bool) -> None:
        """Ignored once shutdown has begun: a stopping server never reports SERVING again."""
        async with self._lock:
            await self._publish(self._book.set_serving(service_name, serving))

    async def set_dependency_serving(self, service_name: str, serving: bool) -> None:
        """Whether a service this one calls answers (`services.common.dependency_health`)."""
        async with self._lock:
            await self._publish(self._book.set_dependency_serving(service_name, serving))

    async def begin_shutdown(self) -> None:
        """Report NOT_SERVING for everything from now on, so clients move elsewhere."""
        await self.servicer.enter_graceful_shutdown()

    async def _publish(self, changes: dict[str, int]) -> None:
        for service_name, status in changes.items():
            await self.servicer.set(service_name, status)


AioSesameServer = SesameServer[grpc.aio.Server, AioServiceHealth]


async def create_aio_server(
    settings: ServerSettings,
    services: Sequence[ServiceRegistration],
    *,
    share_port: bool = False,
) -> AioSesameServer:
    """Build the server with the given services, health and reflection; bind, don't start.

    Call from the event loop that will run it. `share_port` as in `create_server`.
    """
    names = service_names(services)
    server = grpc.aio.server(
        interceptors=default_aio_interceptors(access_guard(settings)),
        options=channel_options(settings, share_port),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    for registration in services:
        registration.add_to_server(server)
    service_health = AioServiceHealth(services)
    await service_health.publish()
    health_pb2_grpc.add_HealthServicer_to_server(service_health.servicer, server)
    enable_reflection(server, names)
    port = bind_service_port(server, settings)
    probe_server, probe_port = _health_probe_server(settings, service_health, share_port)
    return SesameServer(server, port, service_health, probe_server, probe_port)


def _health_probe_server(
    settings: ServerSettings, service_health: AioServiceHealth, share_port: bool
) -> tuple[grpc.aio.Server | None, int]:
    """The plaintext listener for probes that cannot speak TLS: the health service alone."""
    if settings.health_port == 0:
        return None, 0
    server = grpc.aio.server(options=channel_options(settings, share_port))
    health_pb2_grpc.add_HealthServicer_to_server(service_health.servicer, server)
    port = server.add_insecure_port(listen_address(settings.host, settings.health_port))
    return server, port


async def stop_aio_gracefully(
    created: AioSesameServer,
    grace_period_s: float,
    *,
    on_stopping: Callable[[], None] | None = None,
) -> None:
    """Report NOT_SERVING, run the blocking `on_stopping` on a worker thread, then refuse new
    calls and give running calls up to the grace period. Returns once the server has stopped."""
    await created.health.begin_shutdown()
    try:
        if on_stopping is not None:
            await asyncio.to_thread(on_stopping)
    finally:
        await created.server.stop(grace_period_s)
        if created.probe_server is not None:
            await created.probe_server.stop(0)


def serve_aio(
    settings: ServerSettings,
    services: Sequence[ServiceRegistration],
    *,
    service_name: str | None = None,
    before_start: Callable[[], None] | None = None,
    on_started: Callable[[AioSesameServer], Awaitable[None]] | None = None,
    on_stopping: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
    as_worker: bool = False,
) -> None:
    """Run the server until SIGTERM or SIGINT, then stop gracefully; call from the main thread.

    The hooks mean what they mean for `services.common.server.serve`. `before_start` and
    `on_stopping` are blocking functions, run on a worker thread; `on_started` is a coroutine
    function; `on_stop` runs once the event loop has ended.
    """

    def serve_until_stopped(stop_signals: StopSignals) -> None:
        asyncio.run(
            _serve(
                settings,
                services,
                stop_signals,
                before_start=before_start,
                on_started=on_started,
                on_stopping=on_stopping,
                as_worker=as_worker,
            )
        )

    run_serving_process(
        settings,
        services,
        serve_until_stopped,
        service_name=service_name,
        on_stop=on_stop,
        as_worker=as_worker,
    )


async def _serve(
    settings: ServerSettings,
    services: Sequence[ServiceRegistration],
    stop_signals: StopSignals,
    *,
    before_start: Callable[[], None] | None,
    on_started: Callable[[AioSesameServer], Awaitable[None]] | None,
    on_stopping: Callable[[], None] | None,
    as_worker: bool,
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="grpc-worker")
    )
    if before_start is not None:
        await _start_up_step(asyncio.to_thread(before_start))
    created = await create_aio_server(settings, services, share_port=as_worker)
    await created.server.start()
    if created.probe_server is not None:
        await created.probe_server.start()
    log_server_started(services, settings, created.port, created.probe_port)
    if on_started is not None:
        await _start_up_step(on_started(created), created.server)
    freeze_start_up_objects()
    # The signal handler only records the signal (see services.common.stop_signals); the loop
    # looks for it between calls.
    while stop_signals.received is None:
        await asyncio.sleep(POLL_INTERVAL_S)
    log_server_stopping(stop_signals.received, settings)
    await stop_aio_gracefully(created, settings.grace_period_s, on_stopping=on_stopping)


async def _start_up_step(step: Awaitable[None], started: grpc.aio.Server | None = None) -> None:
    """Awaits one start-up step; if it fails, stops the server started so far and lets the
    error through."""
    try:
        await step
    except BaseException:
        log_start_failed()
        if started is not None:
            await started.stop(0)
        raise
