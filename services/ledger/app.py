"""Assembles the ledger: storage, use cases, servicer, expiry sweeper.

`build_ledger` returns the parts without serving them, for tests and embedding; `run`
runs them as the process `python -m services.ledger` does, until SIGTERM or SIGINT.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.clock import Clock, clock_from_setting
from services.common.runtime import ServiceRegistration, configure_service_tracing
from services.common.server import serve
from services.ledger.api.servicer import SERVICE_NAME, LedgerServicer
from services.ledger.service.ids import IdGenerator
from services.ledger.service.ledger_service import LedgerService
from services.ledger.service.sweeper import ExpirySweeper
from services.ledger.settings import LedgerSettings
from services.ledger.storage.migrate import upgrade
from services.ledger.storage.sql_storage import open_ledger_storage

# What the ledger's log lines are labelled with.
SERVICE_LABEL = "ledger"


@dataclass(frozen=True)
class Ledger:
    """The ledger's parts, wired together: add `registration` to a server to serve them."""

    service: LedgerService
    servicer: LedgerServicer
    registration: ServiceRegistration

    def close(self) -> None:
        self.service.close()


def build_ledger(
    settings: LedgerSettings, clock: Clock | None = None, ids: IdGenerator | None = None
) -> Ledger:
    """The ledger over the settings' database (whose schema must exist: see `upgrade`)."""
    storage = open_ledger_storage(
        settings.database_url,
        pool_size=settings.database_pool_size,
        pool_timeout_s=settings.database_pool_timeout_s,
        write_concurrency=settings.write_concurrency,
    )
    service = LedgerService(
        storage,
        clock or clock_from_setting(settings.clock_file),
        ids=ids,
        watch_poll_interval_s=settings.watch_poll_interval_s,
    )
    servicer = LedgerServicer(service)
    return Ledger(service, servicer, ServiceRegistration(SERVICE_NAME, servicer.add_to_server))


def run(settings: LedgerSettings) -> int:
    """Migrates the schema when the settings ask for it (the local default; production runs
    `sesame-ledger-admin migrate` as a separate step), starts the expiry sweeper and serves."""
    configure_service_tracing(SERVICE_LABEL, settings)
    if settings.create_schema:
        upgrade(settings.database_url)
    ledger = build_ledger(settings)
    sweeper = (
        ExpirySweeper(ledger.service, settings.sweep_interval_s, settings.sweep_batch_size)
        if settings.sweep_interval_s > 0
        else None
    )
    if sweeper is not None:
        sweeper.start()

    def on_stop() -> None:
        if sweeper is not None:
            sweeper.stop()
        ledger.close()

    serve(
        settings,
        [ledger.registration],
        service_name=SERVICE_LABEL,
        # Entry streams have no end of their own: ending them as the stop begins gives watchers
        # UNAVAILABLE with SHUTTING_DOWN (resume elsewhere) and lets the server stop as soon as
        # the other calls in flight have finished, instead of at the end of the grace period.
        on_stopping=ledger.service.begin_shutdown,
        on_stop=on_stop,
    )
    return 0
