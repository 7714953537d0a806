"""Assembles the waiver service: servicer over its use cases.

`build_waiver` returns the parts without serving them, for tests and embedding; `run` serves
them as the process `python -m services.waiver` does, until SIGTERM or SIGINT.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.server import ServiceRegistration, serve
from services.waiver.api.servicer import SERVICE_NAME, WaiverServicer
from services.waiver.settings import WaiverSettings

# What the waiver's log lines are labelled with.
SERVICE_LABEL = "waiver"


@dataclass(frozen=True)
class Waiver:
    """The waiver's parts, wired together: add `registration` to a server to serve them."""

    servicer: WaiverServicer
    registration: ServiceRegistration

    def close(self) -> None:
        pass


def build_waiver(settings: WaiverSettings) -> Waiver:
    # Every RPC answers UNIMPLEMENTED (the generated base) until it is built.
    servicer = WaiverServicer()  # type: ignore[abstract]
    return Waiver(servicer, ServiceRegistration(SERVICE_NAME, servicer.add_to_server))


def run(settings: WaiverSettings) -> int:
    waiver = build_waiver(settings)
    serve(settings, [waiver.registration], service_name=SERVICE_LABEL, on_stop=waiver.close)
    return 0
