"""Fixtures shared by every suite: PostgreSQL databases that live only as long as the test run.

Each run creates its own databases on the server named by SESAME_TEST_POSTGRES_URL (default: the
local server at 127.0.0.1:5432, user postgres) and drops them when the run ends. Outside CI an
unreachable server skips the PostgreSQL tests with a loud reason; under CI=true it fails the run,
because CI must prove storage works on PostgreSQL too.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url

SERVER_URL_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
CONNECT_TIMEOUT_S = 5


def _server_url() -> str:
    return os.environ.get("SESAME_TEST_POSTGRES_URL", SERVER_URL_DEFAULT)


def _admin_connection() -> psycopg.Connection[tuple[object, ...]]:
    url = make_url(_server_url())
    return psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database or "postgres",
        connect_timeout=CONNECT_TIMEOUT_S,
        autocommit=True,
    )


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def postgres_database_factory() -> Iterator[Callable[[], str]]:
    """Returns a function that creates a fresh, empty database and gives its SQLAlchemy URL.

    Every database it creates is dropped when the test session ends.
    """
    try:
        admin = _admin_connection()
    except psycopg.OperationalError as error:
        message = f"PostgreSQL is unreachable at {_server_url()}: {error}"
        if _running_in_ci():
            pytest.fail(f"{message} (CI requires PostgreSQL)", pytrace=False)
        pytest.skip(f"SKIPPING POSTGRESQL TESTS: {message}")
    run_tag = uuid.uuid4().hex[:10]
    created: list[str] = []

    def create_database() -> str:
        name = f"sesame_test_{run_tag}_{len(created)}"
        admin.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return make_url(_server_url()).set(database=name).render_as_string(hide_password=False)

    try:
        yield create_database
    finally:
        for name in created:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def postgres_url(postgres_database_factory: Callable[[], str]) -> str:
    """One fresh PostgreSQL database for the whole run, dropped at its end."""
    return postgres_database_factory()
