"""Assembles the ledger: storage, use cases, servicer, expiry sweeper, checkpoint signer.

`build_ledger` returns the parts without serving them, for tests and embedding; `run`
runs them as the process `python -m services.ledger` does, until SIGTERM or SIGINT.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.clock import Clock, clock_from_setting
from services.common.runtime import ServiceRegistration, configure_service_tracing
from services.common.server import serve
from services.ledger.adapters.checkpoint_keys import load_signing_key
from services.ledger.adapters.checkpoint_log import CheckpointLogFile
from services.ledger.api.servicer import SERVICE_NAME, LedgerServicer
from services.ledger.service.checkpoints import Checkpointer, CheckpointTask
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
    """The ledger's parts, wired together: add `registration` to a server to serve them.
    `checkpointer` signs checkpoints when the settings name a key and a log."""

    service: LedgerService
    servicer: LedgerServicer
    registration: ServiceRegistration
    checkpointer: Checkpointer | None = None

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
    clock = clock or clock_from_setting(settings.clock_file)
    # Read at start, so that a missing or wrong key stops the ledger at once.
    key = load_signing_key(settings.checkpoint_key_file) if settings.checkpoint_key_file else None
    service = LedgerService(
        storage,
        clock,
        ids=ids,
        watch_poll_interval_s=settings.watch_poll_interval_s,
        checkpoint_verifier=key,
    )
    checkpointer = (
        Checkpointer(
            storage, clock, key, CheckpointLogFile(settings.checkpoint_log_file), service.notifier
        )
        if key is not None and settings.checkpoint_log_file
        else None
    )
    servicer = LedgerServicer(service)
    registration = ServiceRegistration(SERVICE_NAME, servicer.add_to_server)
    return Ledger(service, servicer, registration, checkpointer)


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
    checkpoints = (
        CheckpointTask(ledger.checkpointer, settings.checkpoint_interval_s)
        if ledger.checkpointer is not None and settings.checkpoint_interval_s > 0
        else None
    )
    if checkpoints is not None:
        checkpoints.start()

    def on_stop() -> None:
        if sweeper is not None:
            sweeper.stop()
        if checkpoints is not None:
            checkpoints.stop()
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
