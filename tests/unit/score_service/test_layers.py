"""Only the score service's api/ package sees gRPC and generated messages."""

from __future__ import annotations

import ast
from pathlib import Path

SCORE_ROOT = Path(__file__).resolve().parents[3] / "services" / "score"


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def test_the_service_layer_never_imports_grpc_or_protobuf() -> None:
    offenders = [
        str(path.relative_to(SCORE_ROOT))
        for path in (SCORE_ROOT / "service").rglob("*.py")
        if any(
            module.split(".")[0] in {"grpc", "sesame", "google"} or "api" in module.split(".")
            for module in imported_modules(path)
        )
    ]
    assert offenders == []
