"""Assembles the waiver service: storage, the ledger and score clients, the use cases, the
servicer, and the background passes (the sweeper, the recovery pass, and the watch on the
ledger's credit history entries that keeps the scores the waiver holds fresh).

`build_waiver` returns the parts without serving them, for tests and embedding; `run` serves
them as the process `python -m services.waiver` does, until SIGTERM or SIGINT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import grpc
import structlog
from sesame.ledger.v1 import ledger_service_pb2
from sesame.score.v1 import score_service_pb2

from services.common.channels import client_channel
from services.common.clock import Clock, clock_from_setting
from services.common.dependency_health import Dependency, DependencyWatch
from services.common.history_watch import CacheInvalidator, LedgerHistoryStream
from services.common.periodic import PeriodicTask
from services.common.runtime import ServiceRegistration, configure_service_tracing
from services.common.server import ServiceHealth, serve
from services.waiver.adapters.ledger_client import LedgerClient
from services.waiver.adapters.order_metrics import PrometheusOrderMetrics
from services.waiver.adapters.score_client import ScoreClient
from services.waiver.adapters.seed_file import read_seed_file
from services.waiver.api.servicer import SERVICE_NAME, WaiverServicer
from services.waiver.domain.policy import whole_unit_minor
from services.waiver.service.capacity import CapacityKeeper
from services.waiver.service.orders import OrderService
from services.waiver.service.policies import PolicyService
from services.waiver.service.recent_scores import RecentScores
from services.waiver.settings import WaiverSettings
from services.waiver.storage.migrate import upgrade
from services.waiver.storage.sql_storage import SqlWaiverStorage

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

# What the waiver's log lines are labelled with.
SERVICE_LABEL = "waiver"
SWEEP_BATCH = 200
RECOVERY_BATCH = 100
LEDGER_SERVICE_NAME = ledger_service_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name
SCORE_SERVICE_NAME = score_service_pb2.DESCRIPTOR.services_by_name["ScoreService"].full_name


@dataclass
class Waiver:
    """The waiver's parts, wired together: add `registration` to a server to serve them."""

    settings: WaiverSettings
    orders: OrderService
    policies: PolicyService
    scores: RecentScores
    registration: ServiceRegistration
    storage: SqlWaiverStorage
    channels: tuple[grpc.Channel, ...]
    dependencies: tuple[Dependency, ...] = ()
    tasks: list[PeriodicTask] = field(default_factory=list)
    dependency_watch: DependencyWatch | None = None
    # Follows the ledger's credit history entries for the scores the waiver keeps.
    history_watch: CacheInvalidator | None = None

    def start(self) -> None:
        """Stores the seed policies, finishes what a crash left half done, starts the passes."""
        if self.settings.seed_policies_file:
            seeded = self.policies.seed(
                read_seed_file(
                    Path(self.settings.seed_policies_file),
                    whole_unit_minor(self.settings.currency_code),
                )
            )
            log.info("seed_policies_stored", stored=seeded)
        if self.settings.recovery_interval_s > 0:
            self.tasks.append(
                PeriodicTask(
                    "waiver-recovery",
                    self.settings.recovery_interval_s,
                    lambda: self.orders.recover(RECOVERY_BATCH),
                )
            )
        if self.settings.sweep_interval_s > 0:
            self.tasks.append(
                PeriodicTask(
                    "waiver-sweeper",
                    self.settings.sweep_interval_s,
                    lambda: self.orders.sweep(SWEEP_BATCH),
                )
            )
        for task in self.tasks:
            task.start()
        if self.history_watch is not None:
            self.history_watch.start()

    def watch_dependencies(self, health: ServiceHealth) -> None:
        """Reports on the health service whether the ledger and the score service answer."""
        if self.settings.dependency_check_interval_s <= 0:
            return
        self.dependency_watch = DependencyWatch(
            self.dependencies,
            health.set_dependency_serving,
            interval_s=self.settings.dependency_check_interval_s,
            timeout_s=self.settings.dependency_check_timeout_s,
        )
        self.dependency_watch.start()

    def close(self) -> None:
        if self.dependency_watch is not None:
            self.dependency_watch.stop()
        for task in self.tasks:
            task.stop()
        if self.history_watch is not None:
            self.history_watch.stop()
        for channel in self.channels:
            channel.close()
        self.storage.close()


def build_waiver(settings: WaiverSettings, clock: Clock | None = None) -> Waiver:
    """The waiver over the settings' database (whose schema must exist: see `upgrade`)."""
    clock = clock or clock_from_setting(settings.clock_file)
    unit_minor = whole_unit_minor(settings.currency_code)
    storage = SqlWaiverStorage(
        settings.database_url,
        pool_size=settings.database_pool_size,
        pool_timeout_s=settings.database_pool_timeout_s,
    )
    ledger_channel = client_channel(settings.ledger_address, settings.tls_files)
    score_channel = client_channel(settings.score_address, settings.tls_files)
    ledger = LedgerClient(
        ledger_channel, settings.currency_code, deadline_s=settings.ledger_deadline_s
    )
    scores = RecentScores(
        ScoreClient(score_channel, deadline_s=settings.score_deadline_s),
        clock,
        max_age_s=settings.score_cache_max_age_s,
        max_users=settings.score_cache_max_entries,
    )
    history_watch = (
        CacheInvalidator(
            LedgerHistoryStream(ledger_channel, report_caught_up=True),
            scores.history_changed,
            on_caught_up=scores.caught_up,
            on_behind=scores.behind,
            start_from_now=True,
        )
        if settings.score_cache_max_age_s > 0
        else None
    )
    policies = PolicyService(storage, clock, settings.currency_code)
    orders = OrderService(
        storage,
        ledger,
        scores,
        CapacityKeeper(storage, ledger, unit_minor),
        policies,
        clock,
        currency_code=settings.currency_code,
        unit_minor=unit_minor,
        step_lease_s=settings.step_lease_s,
        create_undo_after_s=settings.create_undo_after_s,
        metrics=PrometheusOrderMetrics(settings.currency_code),
    )
    servicer = WaiverServicer(orders, policies, settings.currency_code)
    return Waiver(
        settings,
        orders,
        policies,
        scores,
        ServiceRegistration(SERVICE_NAME, servicer.add_to_server),
        storage,
        (ledger_channel, score_channel),
        (
            Dependency(LEDGER_SERVICE_NAME, ledger_channel),
            Dependency(SCORE_SERVICE_NAME, score_channel),
        ),
        history_watch=history_watch,
    )


def run(settings: WaiverSettings) -> int:
    configure_service_tracing(SERVICE_LABEL, settings)
    if settings.create_schema:
        upgrade(settings.database_url)
    waiver = build_waiver(settings)
    serve(
        settings,
        [waiver.registration],
        service_name=SERVICE_LABEL,
        before_start=waiver.start,
        on_started=lambda created: waiver.watch_dependencies(created.health),
        on_stop=waiver.close,
    )
    return 0
