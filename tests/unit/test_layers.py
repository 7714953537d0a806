"""The house's rules, read from the imports of every module under services/.

Each service is `api/` (the only code that sees gRPC and generated messages) -> `service/` (use
cases) -> `domain/` (pure rules), with `storage/` and `adapters/` implementing the ports the
service layer declares, and `app.py` wiring them together. Services meet only through the
generated contracts: no service imports another, and what they share lives in
`services/common` (infrastructure) or `services/datasets` (public data sets in the contracts'
shape). `services/suite` runs the services as processes and reaches them over gRPC only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES_ROOT = Path(__file__).resolve().parents[2] / "services"
SERVICE_NAMES = ("ledger", "score", "waiver")
# What each package under services/ may import from services.* besides itself.
SHARED_PACKAGES = {
    "common": (),
    "datasets": ("services.common",),
    "suite": ("services.common", "services.datasets"),
    **{name: ("services.common", "services.datasets") for name in SERVICE_NAMES},
}
# Frameworks that belong at the edges: the api (gRPC), storage (SQL), adapters (other services,
# model runtimes), never the use cases or the rules.
EDGE_FRAMEWORKS = (
    "grpc",
    "google.protobuf",
    "google.rpc",
    "sesame",
    "sqlalchemy",
    "sqlmodel",
    "alembic",
    "psycopg",
    "onnx",
    "onnxruntime",
)
LAYER_FORBIDS = {
    "domain": (*EDGE_FRAMEWORKS, "numpy", "api", "service", "storage", "adapters", "training"),
    "service": (*EDGE_FRAMEWORKS, "api", "storage", "adapters", "training"),
    "api": ("storage", "adapters", "training"),
    "storage": ("api", "adapters"),
    "adapters": ("api", "storage"),
}


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def modules_of(package: str) -> list[Path]:
    return sorted((SERVICES_ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(SHARED_PACKAGES))
def test_a_package_imports_only_itself_and_what_is_shared(package: str) -> None:
    allowed = (f"services.{package}", *SHARED_PACKAGES[package])
    offenders = {
        f"{path.relative_to(SERVICES_ROOT)}: {module}"
        for path in modules_of(package)
        for module in imported_modules(path)
        if is_within(module, "services") and not any(is_within(module, a) for a in allowed)
    }
    assert offenders == set()


@pytest.mark.parametrize("service", SERVICE_NAMES)
@pytest.mark.parametrize("layer", sorted(LAYER_FORBIDS))
def test_a_layer_imports_nothing_beyond_its_reach(service: str, layer: str) -> None:
    forbidden = [
        name
        if "." in name or name not in {"api", "service", "storage", "adapters", "training"}
        else f"services.{service}.{name}"
        for name in LAYER_FORBIDS[layer]
    ]
    offenders = {
        f"{path.relative_to(SERVICES_ROOT)}: {module}"
        for path in modules_of(f"{service}/{layer}")
        for module in imported_modules(path)
        if any(is_within(module, prefix) for prefix in forbidden)
    }
    assert offenders == set()


def test_every_service_has_the_same_shape() -> None:
    for service in SERVICE_NAMES:
        root = SERVICES_ROOT / service
        assert (root / "app.py").is_file(), service
        assert (root / "__main__.py").is_file(), service
        for layer in ("api", "service", "domain"):
            assert (root / layer / "__init__.py").is_file(), f"{service}/{layer}"


def test_the_rules_see_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "rules.py"
    module.write_text("import grpc\nfrom services.ledger.domain import rules\nfrom . import x\n")

    assert imported_modules(module) == {"grpc", "services.ledger.domain"}
