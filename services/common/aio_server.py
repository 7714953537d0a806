"""Building and running a Sesame gRPC server on asyncio (grpc.aio).

The counterpart of `services.common.server` for a service whose calls are mostly short and
CPU-bound (the score service): one event loop runs every call, with no hand-off to a worker
thread per call. `make bench-score` compares the two runtimes on the same echo service
(`echo_sync_per_s`, `echo_asyncio_per_s`): with answers of a real score's size the asyncio
server answered more calls per second in 14 of 15 rounds over five runs.

The same registrations, settings, health, reflection, interceptors (their asyncio versions),
connection ageing, port sharing for workers, metrics and graceful stop as the synchronous
server. Blocking work (a read from another service, a model run) belongs in
`asyncio.to_thread`, which runs on the server's worker threads (`SESAME_<SVC>_MAX_WORKERS`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import structlog
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.aio_interceptors import default_aio_interceptors
from services.common.logging import configure_logging
from services.common.server import (
    ServiceRegistration,
    channel_options,
    freeze_start_up_objects,
    health_changes,
    listen_address,
    require_unique,
    start_metrics_endpoint,
)
from services.common.settings import ServerSettings
from services.common.stop_signals import POLL_INTERVAL_S, StopSignals, handling_stop_signals

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

T = TypeVar("T")


class AioServiceHealth:
    """What the standard health service reports, per registered service and overall."""

    def __init__(self, service_names: Sequence[str], initially_serving: Sequence[bool]) -> None:
        self.servicer = health.aio.HealthServicer()
        self._serving = dict(zip(service_names, initially_serving, strict=True))
        self._reported: dict[str, int] = {}

    async def publish(self) -> None:
        for service_name, status in health_changes(self._serving, self._reported).items():
            await self.servicer.set(service_name, status)
            self._reported[service_name] = status

    async def set_serving(self, service_name: str, serving: bool) -> None:
        """Ignored once shutdown has begun: a stopping server never reports SERVING again."""
        if service_name not in self._serving:
            raise KeyError(f"{service_name!r} is not a service of this server")
        self._serving[service_name] = serving
        await self.publish()

    async def begin_shutdown(self) -> None:
        """Report NOT_SERVING for everything from now on, so clients move elsewhere."""
        await self.servicer.enter_graceful_shutdown()


@dataclass(frozen=True)
class AioSesameServer:
    """A built server, not yet started; `health` sets what it reports."""

    server: grpc.aio.Server
    port: int
    health: AioServiceHealth

    async def stop_gracefully(self, grace_period_s: float) -> None:
        """Report NOT_SERVING, refuse new calls, give running calls up to the grace period."""
        await self.health.begin_shutdown()
        await self.server.stop(grace_period_s)


async def create_aio_server(
    settings: ServerSettings,
    services: Sequence[ServiceRegistration],
    *,
    share_port: bool = False,
) -> AioSesameServer:
    """Build the server with the given services, health and reflection; bind, don't start.

    Call from the event loop that will run it. `share_port` as in `create_server`.
    """
    service_names = [registration.name for registration in services]
    require_unique(service_names)
    server = grpc.aio.server(
        interceptors=default_aio_interceptors(),
        options=channel_options(settings, share_port),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    for registration in services:
        registration.add_to_server(server)
    service_health = AioServiceHealth(
        service_names, [registration.initially_serving for registration in services]
    )
    await service_health.publish()
    health_pb2_grpc.add_HealthServicer_to_server(service_health.servicer, server)
    reflection.enable_server_reflection(
        (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(listen_address(settings.host, settings.port))
    return AioSesameServer(server, port, service_health)


def serve_aio(
    settings: ServerSettings,
    services: Sequence[ServiceRegistration],
    *,
    service_name: str | None = None,
    before_start: Callable[[], None] | None = None,
    on_started: Callable[[AioSesameServer], Awaitable[None]] | None = None,
    on_stop: Callable[[], None] | None = None,
    as_worker: bool = False,
) -> None:
    """Run the server until SIGTERM or SIGINT, then stop gracefully; call from the main thread.

    The hooks mean what they mean for `services.common.server.serve`; `before_start` and
    `on_stop` are blocking functions (run on a worker thread and after the loop's server has
    stopped), `on_started` is a coroutine function.
    """
    service_names = [registration.name for registration in services]
    configure_logging(service_name or ",".join(service_names) or "sesame", settings.log_level)
    with handling_stop_signals() as stop_signals:
        metrics_endpoint = None if as_worker else start_metrics_endpoint(settings)
        try:
            asyncio.run(
                _serve(
                    settings,
                    services,
                    stop_signals,
                    before_start=before_start,
                    on_started=on_started,
                    as_worker=as_worker,
                )
            )
        finally:
            if on_stop is not None:
                on_stop()
            if metrics_endpoint is not None:
                metrics_endpoint()
    log.info("server_stopped")


async def _serve(
    settings: ServerSettings,
    services: Sequence[ServiceRegistration],
    stop_signals: StopSignals,
    *,
    before_start: Callable[[], None] | None,
    on_started: Callable[[AioSesameServer], Awaitable[None]] | None,
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
    log.info(
        "server_started",
        services=[registration.name for registration in services],
        address=listen_address(settings.host, created.port),
        port=created.port,
    )
    if on_started is not None:
        await _start_up_step(on_started(created), created)
    freeze_start_up_objects()
    while stop_signals.received is None:
        await asyncio.sleep(POLL_INTERVAL_S)
    log.info(
        "server_stopping",
        signal=stop_signals.received.name,
        grace_period_s=settings.grace_period_s,
    )
    await created.stop_gracefully(settings.grace_period_s)


async def _start_up_step(step: Awaitable[None], started: AioSesameServer | None = None) -> None:
    """Awaits one start-up step; if it fails, stops what was started and lets the error out."""
    try:
        await step
    except BaseException:
        log.exception("server_start_failed")
        if started is not None:
            await started.server.stop(0)
        raise


class AioServerThread:
    """An event loop on a thread of its own, for tests and tools that drive an asyncio server
    from synchronous code: `run` runs a coroutine on that loop and waits for its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="aio-server-loop", daemon=True
        )
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()
