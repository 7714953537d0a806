"""Fixtures of the fault suite: the suite taken apart (`tests.support.faulty_suite`) over fresh
databases, SQLite or PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.faulty_suite import FaultySuite, start_faulty_suite, stop_everything


@pytest.fixture(params=["sqlite", "postgresql"])
def database_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """A fresh database per service name: a new SQLite file, or a new PostgreSQL database on the
    shared server (dropped at the end of the run)."""
    if request.param == "sqlite":
        return lambda name: f"sqlite:///{tmp_path / f'{name}.db'}"
    factory: Callable[[], str] = request.getfixturevalue("postgres_database_factory")
    return lambda name: factory()


@pytest.fixture
def faulty_suite(tmp_path: Path, database_urls: Callable[[str], str]) -> Iterator[FaultySuite]:
    started: list[Any] = []
    try:
        yield start_faulty_suite(
            tmp_path, database_urls("ledger"), database_urls("waiver"), started
        )
    finally:
        stop_everything(started)
