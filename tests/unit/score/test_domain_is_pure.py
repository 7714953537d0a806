"""Dependencies point inward only: the score domain imports nothing of gRPC, protobuf,
onnxruntime or the training stack, nor anything outside the domain; the service layer imports
neither the API, the adapters nor training."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DOMAIN = Path(__file__).resolve().parents[3] / "services" / "score" / "domain"
FORBIDDEN_PREFIXES = (
    "grpc",
    "google.protobuf",
    "sesame.",
    "onnx",
    "onnxruntime",
    "lightgbm",
    "numpy",
    "sqlmodel",
    "services.score.api",
    "services.score.adapters",
    "services.score.training",
    "services.ledger",
)


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def offending_imports(path: Path, forbidden_prefixes: tuple[str, ...]) -> set[str]:
    return {
        module
        for module in imported_modules(path)
        if any(
            module == prefix.rstrip(".") or module.startswith(prefix)
            for prefix in forbidden_prefixes
        )
    }


@pytest.mark.parametrize("path", sorted(DOMAIN.glob("*.py")), ids=lambda path: path.name)
def test_domain_module_imports_only_plain_python(path: Path) -> None:
    offending = offending_imports(path, FORBIDDEN_PREFIXES)
    assert not offending, f"{path.name} imports {sorted(offending)}"


def test_protected_attributes_are_never_features() -> None:
    from services.score.domain.features import FEATURE_NAMES, FEATURES

    protected = ("sex", "gender", "age", "education", "marriage", "marital")
    for feature in FEATURES:
        words = set(feature.name.split("_")) | set(feature.description.lower().split())
        assert not words & set(protected), feature.name
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


SERVICE_LAYER = DOMAIN.parent / "service"
SERVICE_FORBIDDEN_PREFIXES = (
    "grpc",
    "sesame.",
    "services.score.api",
    "services.score.adapters",
    "services.score.training",
)


@pytest.mark.parametrize("path", sorted(SERVICE_LAYER.glob("*.py")), ids=lambda path: path.name)
def test_service_layer_depends_on_neither_the_api_nor_adapters_nor_training(path: Path) -> None:
    offending = offending_imports(path, SERVICE_FORBIDDEN_PREFIXES)
    assert not offending, f"{path.name} imports {sorted(offending)}"
