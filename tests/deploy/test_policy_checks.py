"""Policy checks on what operators deploy: hadolint on the Dockerfile, and checkov on the
Dockerfile and on every rendered overlay.

checkov's severities come only with a Prisma Cloud key, which CI has not, so this is stricter
than "nothing of medium severity or above": no failed check at all, apart from the exceptions
the manifests and the Dockerfile declare (`checkov.io/skipN` annotations, `checkov:skip=`
comments). Every exception must be one deploy/README.md lists with its reason, and must still
be needed (a skip that suppresses nothing is stale and fails too).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.manifests import (
    DEPLOY,
    OVERLAYS,
    REPOSITORY_ROOT,
    render,
    rendered_text,
    tool_or_skip,
)

CHECKOV = REPOSITORY_ROOT / "var" / "tools" / "checkov" / "bin" / "checkov"
DOCKERFILE = DEPLOY / "Dockerfile"
CHECK_ID = re.compile(r"\bCKV2?_[A-Z0-9]+_\d+\b")


def run_checkov(arguments: list[str]) -> list[dict[str, Any]]:
    checkov = tool_or_skip("checkov", CHECKOV)
    completed = subprocess.run(
        [checkov, *arguments, "--output", "json", "--skip-download", "--compact"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # checkov exits 1 when a check fails; anything else is checkov failing.
    assert completed.returncode in (0, 1), completed.stderr
    report = json.loads(completed.stdout)
    reports: list[dict[str, Any]] = report if isinstance(report, list) else [report]
    return reports


def failed_and_skipped(reports: list[dict[str, Any]]) -> tuple[list[str], set[str]]:
    failed, skipped = [], set()
    for report in reports:
        results = report.get("results", {})
        for check in results.get("failed_checks", []):
            failed.append(f"{check['check_id']} {check['resource']}: {check['check_name']}")
        skipped.update(check["check_id"] for check in results.get("skipped_checks", []))
    return failed, skipped


def documented_exceptions() -> set[str]:
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Policy exceptions", 1)[1].split("\n## ", 1)[0]
    return set(CHECK_ID.findall(section))


def declared_skips(overlay: str) -> set[str]:
    skips = set()
    for document in render(overlay):
        for key, value in (document["metadata"].get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                skips.add(value.split("=", 1)[0])
    return skips


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = tool_or_skip("hadolint", Path(sys.executable).parent / "hadolint")
    completed = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_checkov_fails_no_check_on_the_dockerfile() -> None:
    failed, skipped = failed_and_skipped(
        run_checkov(["--file", str(DOCKERFILE), "--framework", "dockerfile"])
    )
    assert failed == []
    declared = set(re.findall(r"checkov:skip=(CKV2?_[A-Z0-9]+_\d+)", DOCKERFILE.read_text()))
    assert declared == skipped
    assert declared <= documented_exceptions()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_fails_no_check_on_the_rendered_overlay(overlay: str, tmp_path: Path) -> None:
    (tmp_path / f"{overlay}.yaml").write_text(rendered_text(overlay), encoding="utf-8")
    failed, skipped = failed_and_skipped(
        run_checkov(["--directory", str(tmp_path), "--framework", "kubernetes"])
    )
    assert failed == []
    declared = declared_skips(overlay)
    assert declared == skipped, "a declared exception suppresses nothing, or one is undeclared"
    assert declared <= documented_exceptions()
