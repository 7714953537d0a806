"""Fixtures for the waiver's resilience tests: the ledger, the score service and the waiver as
real processes (`python -m services.<name>`, configured only by SESAME_<NAME>_* variables),
each on a free port, that a test can kill and restart on the same database and port.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.suite.launch import free_port
from tests.support.service_process import ServiceProcess


@pytest.fixture(params=["sqlite", "postgresql"])
def database_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """Gives a fresh database per service name: a new SQLite file, or a new PostgreSQL database
    (dropped at the end of the run)."""
    if request.param == "sqlite":
        return lambda name: f"sqlite:///{tmp_path / f'{name}.db'}"
    factory: Callable[[], str] = request.getfixturevalue("postgres_database_factory")
    return lambda name: factory()


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Starts a service process on a free port; every one is stopped at the end."""
    started: list[ServiceProcess] = []

    def start(name: str, **settings: str) -> ServiceProcess:
        service = ServiceProcess(
            name, free_port(), tmp_path / f"{name}-{len(started)}.log", settings
        )
        started.append(service)
        service.start()
        return service

    yield start
    for service in started:
        service.stop()
