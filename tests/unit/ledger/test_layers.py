"""Dependencies point inward: api -> service -> domain. Only the api (and the process entry
points) see gRPC and generated messages; only storage sees SQL."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LEDGER = Path(__file__).resolve().parents[3] / "services" / "ledger"

FORBIDDEN = {
    "domain": (
        "grpc",
        "google.protobuf",
        "sesame.",
        "sqlalchemy",
        "sqlmodel",
        "alembic",
        "psycopg",
        "services.ledger.service",
        "services.ledger.storage",
        "services.ledger.api",
    ),
    "service": (
        "grpc",
        "google.protobuf",
        "sesame.",
        "sqlalchemy",
        "sqlmodel",
        "alembic",
        "psycopg",
        "services.ledger.storage",
        "services.ledger.api",
    ),
    "storage": ("grpc", "google.protobuf", "sesame.", "services.ledger.api"),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_from_outside_its_reach(layer):
    offenders = {
        f"{path.relative_to(LEDGER)}: {module}"
        for path in (LEDGER / layer).rglob("*.py")
        for module in imported_modules(path)
        if module.startswith(FORBIDDEN[layer])
    }

    assert offenders == set()
