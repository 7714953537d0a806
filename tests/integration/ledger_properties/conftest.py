"""Fixtures for the ledger's property tests: a fresh, migrated ledger database per Hypothesis
example, on SQLite and on PostgreSQL.

A test asks for `fresh_ledger_databases` and gets a factory: `create()` returns the URL of a new,
empty, migrated database and `discard(url)` removes it. SQLite databases are copies of a
template migrated once per run; PostgreSQL databases are schemas of their own (selected through
the connection's search_path) in the run's database, migrated on creation (about 0.2 s each).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from services.ledger.storage.migrate import upgrade


class FreshDatabases:
    """Creates and discards empty, migrated ledger databases of one kind."""

    def __init__(self, kind: str, create: Callable[[], str], discard: Callable[[str], None]):
        self.kind = kind
        self._create = create
        self._discard = discard
        self._live: list[str] = []

    def create(self) -> str:
        url = self._create()
        self._live.append(url)
        return url

    def discard(self, url: str) -> None:
        if url in self._live:
            self._live.remove(url)
            self._discard(url)

    def discard_all(self) -> None:
        for url in list(self._live):
            self.discard(url)


@pytest.fixture(scope="session")
def property_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    template = tmp_path_factory.mktemp("ledger-property-template") / "ledger.db"
    upgrade(f"sqlite:///{template}")
    return template


def _postgres_connection(url: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_ledger_databases(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[FreshDatabases]:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("property_sqlite_template")

        def create_sqlite() -> str:
            database = tmp_path / f"ledger-{uuid.uuid4().hex[:12]}.db"
            shutil.copyfile(template, database)
            return f"sqlite:///{database}"

        def discard_sqlite(url: str) -> None:
            database = Path(make_url(url).database or "")
            for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
                path.unlink(missing_ok=True)

        databases = FreshDatabases("sqlite", create_sqlite, discard_sqlite)
    else:
        base_url = make_url(request.getfixturevalue("postgres_url"))
        schemas: dict[str, str] = {}

        def create_postgresql() -> str:
            schema = f"ledger_props_{uuid.uuid4().hex[:12]}"
            with _postgres_connection(base_url) as admin:
                admin.execute(f'CREATE SCHEMA "{schema}"')
            url = base_url.update_query_dict({"options": f"-csearch_path={schema}"})
            url_text = url.render_as_string(hide_password=False)
            schemas[url_text] = schema
            upgrade(url_text)
            return url_text

        def discard_postgresql(url: str) -> None:
            schema = schemas.pop(url)
            with _postgres_connection(base_url) as admin:
                admin.execute(f'DROP SCHEMA "{schema}" CASCADE')

        databases = FreshDatabases("postgresql", create_postgresql, discard_postgresql)
    try:
        yield databases
    finally:
        databases.discard_all()
