"""Assembles the score service: ledger client, model loader and registry, feature cache,
invalidation stream, scoring use cases, servicer.

`build_score` returns the parts without starting anything heavy; `load` loads and warms up the
first model and `report_serving` then reports SERVING. A lone server answers health checks (as
NOT_SERVING) while it loads; a worker loads before it joins the port its siblings answer on, so
no call reaches a worker that cannot score yet.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import partial

import grpc
import structlog
from prometheus_client import Gauge
from sesame.ledger.v1 import ledger_service_pb2

from services.common.aio_server import AioSesameServer, serve_aio
from services.common.channels import client_channel
from services.common.dependency_health import Dependency, DependencyWatch
from services.common.history_cache import HistoryCache
from services.common.history_watch import CacheInvalidator, LedgerHistoryStream
from services.common.logging import configure_logging
from services.common.runtime import (
    ServiceRegistration,
    configure_service_tracing,
    start_metrics_endpoint,
)
from services.common.settings import SettingsError, load_settings
from services.common.workers import SharedText, run_workers, worker_count
from services.score.adapters.drift_metrics import PrometheusDriftRecorder
from services.score.adapters.ledger_client import LedgerClient
from services.score.adapters.onnx_model import OnnxModelLoader
from services.score.adapters.shadow_metrics import PrometheusShadowRecorder
from services.score.api.servicer import SERVICE_NAME, ScoreServicer
from services.score.service.drift_watch import DriftWatch
from services.score.service.model_registry import ModelRegistry
from services.score.service.model_sync import ModelFollower
from services.score.service.ports import ModelChoice
from services.score.service.score_service import CachedUser, ScoreService
from services.score.settings import ScoreSettings

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

# 1 once this process has loaded and warmed up its model (it then reports SERVING); with worker
# processes, the smallest over the live workers.
MODEL_LOADED = Gauge(
    "sesame_score_model_loaded",
    "Whether the model is loaded and warmed up (1) or not yet (0).",
    multiprocess_mode="livemin",
)

# What the score service's log lines are labelled with.
SERVICE_LABEL = "score"
LEDGER_SERVICE_NAME = ledger_service_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name


@dataclass(frozen=True)
class Score:
    """The score service's parts, wired together."""

    settings: ScoreSettings
    models: ModelRegistry
    scores: ScoreService
    cache: HistoryCache[CachedUser]
    invalidator: CacheInvalidator
    registration: ServiceRegistration
    ledger_channel: grpc.Channel
    # Present in a worker process: follows the model swaps of its sibling workers.
    model_follower: ModelFollower | None = None
    # The watch on the ledger's health, once serving (a list: the dataclass is frozen).
    dependency_watches: list[DependencyWatch] = field(default_factory=list)

    def load(self) -> None:
        """Starts following the ledger and the sibling workers; loads and warms up the model."""
        self.invalidator.start()
        self.models.load_initial(self.settings.model_version)
        if self.settings.shadow_model_version:
            self.models.start_shadow(self.settings.shadow_model_version, PrometheusShadowRecorder())
        if self.model_follower is not None:
            self.model_follower.start()

    async def report_serving(self, server: AioSesameServer) -> None:
        MODEL_LOADED.set(1)
        await server.health.set_serving(SERVICE_NAME, True)
        log.info("score_ready")
        await self.watch_ledger(server)

    async def watch_ledger(self, server: AioSesameServer) -> None:
        """Reports on the health service whether the ledger answers. The watch runs on a
        thread of its own and hands each change to the event loop."""
        if self.settings.dependency_check_interval_s <= 0:
            return
        loop = asyncio.get_running_loop()

        def report(service_name: str, serving: bool) -> None:
            asyncio.run_coroutine_threadsafe(
                server.health.set_dependency_serving(service_name, serving), loop
            )

        watch = DependencyWatch(
            [Dependency(LEDGER_SERVICE_NAME, self.ledger_channel)],
            report,
            interval_s=self.settings.dependency_check_interval_s,
            timeout_s=self.settings.dependency_check_timeout_s,
        )
        self.dependency_watches.append(watch)
        await asyncio.to_thread(watch.start)

    async def start_serving(self, server: AioSesameServer) -> None:
        """Loads (on a worker thread), then reports SERVING: for a server already answering."""
        await asyncio.to_thread(self.load)
        await self.report_serving(server)

    def close(self) -> None:
        for watch in self.dependency_watches:
            watch.stop()
        if self.model_follower is not None:
            self.model_follower.stop()
        self.invalidator.stop()
        self.scores.close()
        self.models.close()
        self.ledger_channel.close()


def build_score(settings: ScoreSettings, model_choice: ModelChoice | None = None) -> Score:
    """The parts of one score server; `model_choice` is shared by sibling worker processes."""
    ledger_channel = client_channel(settings.ledger_address, settings.tls_files)
    ledger = LedgerClient(ledger_channel, history_deadline_s=settings.ledger_deadline_s)
    cache: HistoryCache[CachedUser] = HistoryCache(
        settings.cache_max_entries, settings.cache_max_age_s
    )
    models = ModelRegistry(OnnxModelLoader(settings.models_directory), model_choice=model_choice)
    drift = DriftWatch(PrometheusDriftRecorder(), window_rows=settings.drift_window_rows)
    scores = ScoreService(
        ledger, cache, models, history_fetch_threads=settings.history_fetch_threads, drift=drift
    )
    servicer = ScoreServicer(scores, models)
    registration = ServiceRegistration(
        SERVICE_NAME, servicer.add_to_server, initially_serving=False
    )
    invalidator = CacheInvalidator(LedgerHistoryStream(ledger_channel), cache.invalidate_user)
    follower = None if model_choice is None else ModelFollower(model_choice, models.follow)
    return Score(
        settings, models, scores, cache, invalidator, registration, ledger_channel, follower
    )


def run_server(settings: ScoreSettings, model_choice: ModelChoice | None = None) -> None:
    """Runs one score server until SIGTERM or SIGINT; with `model_choice`, as one worker."""
    configure_service_tracing(SERVICE_LABEL, settings)
    score = build_score(settings, model_choice)
    as_worker = model_choice is not None
    serve_aio(
        settings,
        [score.registration],
        service_name=SERVICE_LABEL,
        before_start=score.load if as_worker else None,
        on_started=score.report_serving if as_worker else score.start_serving,
        on_stop=score.close,
        as_worker=as_worker,
    )


def run_worker(model_choice: ModelChoice) -> None:
    """One worker process: the settings come from the environment it inherited.

    Lives here, not in __main__, because spawned workers import their target by module name.
    """
    run_server(load_settings(ScoreSettings), model_choice)


def run(settings: ScoreSettings) -> int:
    """Runs the score service until SIGTERM or SIGINT; the process's exit code.

    One worker serves in this process. With more (SESAME_SCORE_WORKERS; 0 means one per CPU of
    the quota) this process supervises that many server processes sharing the port (see
    `services.common.workers`): each loads its model before it joins the port, so only ready
    workers take calls.
    """
    workers = worker_count(settings.workers)
    if workers == 1:
        run_server(settings)
        return 0
    if settings.port == 0:
        raise SettingsError(
            "ScoreSettings", {"SESAME_SCORE_PORT": "must be a fixed port when workers share it"}
        )
    configure_logging(SERVICE_LABEL, settings.log_level)
    worker_main = partial(run_worker, SharedText())
    metrics_endpoint = partial(start_metrics_endpoint, settings)
    return run_workers(workers, worker_main, name=SERVICE_LABEL, metrics_endpoint=metrics_endpoint)
