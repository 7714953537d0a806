"""The suite taken apart, for the fault suite (tests/e2e/faults): the ledger, the score service
and the waiver as processes a test can kill and restart (`tests.support.service_process`), and a
fault proxy (`tests.support.fault_proxy`) on every connection between them: waiver -> ledger,
waiver -> score, score -> ledger.

The services check their dependencies' health twice a second, so that a test sees a degraded
state soon; the waiver runs with a short step lease, a short undo time for unconfirmed creations
and a frequent recovery pass, so that those act within a test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.suite.launch import free_port
from tests.support.fault_proxy import FaultProxy
from tests.support.service_process import ServiceProcess

DEPENDENCY_CHECKS = {"dependency_check_interval_s": "0.5", "dependency_check_timeout_s": "0.5"}
WAIVER_SETTINGS = {
    "step_lease_s": "2",
    "create_undo_after_s": "4",
    "recovery_interval_s": "0.5",
    "seed_policies_file": "",
    "grace_period_s": "1",
}
HEALTH_WAIT_S = 30.0


@dataclass
class FaultySuite:
    ledger: ServiceProcess
    score: ServiceProcess
    waiver: ServiceProcess
    waiver_to_ledger: FaultProxy
    waiver_to_score: FaultProxy
    score_to_ledger: FaultProxy
    waiver_database_url: str

    @property
    def services(self) -> dict[str, ServiceProcess]:
        return {"ledger": self.ledger, "score": self.score, "waiver": self.waiver}

    @property
    def proxies(self) -> tuple[FaultProxy, ...]:
        return (self.waiver_to_ledger, self.waiver_to_score, self.score_to_ledger)


def start_faulty_suite(
    directory: Path,
    ledger_database_url: str,
    waiver_database_url: str,
    started: list[Any],
    **waiver_settings: str,
) -> FaultySuite:
    """Starts the three services with a proxy on each connection; everything started goes into
    `started` (for the caller to stop, in reverse)."""
    ledger = ServiceProcess(
        "ledger",
        free_port(),
        directory / "ledger.log",
        {"database_url": ledger_database_url, "grace_period_s": "1"},
    )
    started.append(ledger)
    ledger.start()
    score_to_ledger = FaultProxy(ledger.address).start()
    waiver_to_ledger = FaultProxy(ledger.address).start()
    started += [score_to_ledger, waiver_to_ledger]
    score = ServiceProcess(
        "score",
        free_port(),
        directory / "score.log",
        {"ledger_address": score_to_ledger.address, "workers": "1", "grace_period_s": "1"}
        | DEPENDENCY_CHECKS,
    )
    started.append(score)
    score.start()
    waiver_to_score = FaultProxy(score.address).start()
    started.append(waiver_to_score)
    waiver = ServiceProcess(
        "waiver",
        free_port(),
        directory / "waiver.log",
        {
            "database_url": waiver_database_url,
            "ledger_address": waiver_to_ledger.address,
            "score_address": waiver_to_score.address,
        }
        | WAIVER_SETTINGS
        | DEPENDENCY_CHECKS
        | waiver_settings,
    )
    started.append(waiver)
    waiver.start()
    return FaultySuite(
        ledger,
        score,
        waiver,
        waiver_to_ledger,
        waiver_to_score,
        score_to_ledger,
        waiver_database_url,
    )


def stop_everything(started: list[Any]) -> None:
    for part in reversed(started):
        part.stop()


def health_status(address: str, service: str) -> int | None:
    """What the server's health service says of `service`, or None when it does not answer."""
    with grpc.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        try:
            return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2).status)
        except grpc.RpcError:
            return None


def wait_for_health(address: str, service: str, status: int) -> None:
    """Polls until the health service reports `status` for `service`."""
    deadline = time.monotonic() + HEALTH_WAIT_S
    seen = None
    while time.monotonic() < deadline:
        seen = health_status(address, service)
        if seen == status:
            return
        time.sleep(0.1)
    name = health_pb2.HealthCheckResponse.ServingStatus.Name
    raise AssertionError(
        f"{service} at {address} stayed {seen if seen is None else name(seen)},"
        f" never {name(status)} within {HEALTH_WAIT_S} s"
    )
