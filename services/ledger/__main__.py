"""`python -m services.ledger`: the ledger as a process, configured by SESAME_LEDGER_* variables.

It migrates the schema when SESAME_LEDGER_CREATE_SCHEMA is true (the local default; production
runs `sesame-ledger-admin migrate` as a separate step), starts the expiry sweeper and serves
until SIGTERM or SIGINT. The bound port is logged in the "server_started" line.

`build_ledger` assembles the same objects without a process, for tests and embedding.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from services.common.server import ServiceRegistration, serve
from services.common.settings import SettingsError, load_settings
from services.ledger.api.servicer import SERVICE_NAME, LedgerServicer
from services.ledger.service.clock import Clock, SystemClock
from services.ledger.service.ids import IdGenerator
from services.ledger.service.ledger_service import LedgerService
from services.ledger.service.sweeper import ExpirySweeper
from services.ledger.settings import LedgerSettings
from services.ledger.storage.migrate import upgrade
from services.ledger.storage.sql_storage import SqlLedgerStorage


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
    storage = SqlLedgerStorage(
        settings.database_url,
        pool_size=settings.database_pool_size,
        pool_timeout_s=settings.database_pool_timeout_s,
        write_concurrency=settings.write_concurrency,
    )
    service = LedgerService(
        storage,
        clock or SystemClock(),
        ids=ids,
        watch_poll_interval_s=settings.watch_poll_interval_s,
    )
    servicer = LedgerServicer(service)
    return Ledger(service, servicer, ServiceRegistration(SERVICE_NAME, servicer.add_to_server))


def main() -> int:
    try:
        settings = load_settings(LedgerSettings)
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
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

    serve(settings, [ledger.registration], service_name="ledger", on_stop=on_stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
