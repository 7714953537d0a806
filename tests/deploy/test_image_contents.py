"""What the image holds: the Dockerfile installs the suite as a wheel (not in editable mode), so
every file a service reads at run time must be package data, and the build context
(.dockerignore) must let in every path the Dockerfile copies."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support.manifests import DEPLOY, REPOSITORY_ROOT

# Files other than Python modules that the services read at run time.
RUNTIME_DATA = (
    "services/ledger/storage/migrations/script.py.mako",
    "services/ledger/storage/migrations/versions/0001_initial_schema.py",
    "services/waiver/storage/migrations/script.py.mako",
    "services/waiver/storage/migrations/versions/0001_initial_schema.py",
    "services/waiver/policies/seed.toml",
)


def tracked(pattern: str) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", pattern],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


def test_the_wheel_the_image_installs_carries_every_file_the_services_read(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(REPOSITORY_ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("sesame-*.whl")
    contents = set(zipfile.ZipFile(wheel).namelist())
    expected = set(RUNTIME_DATA)
    expected |= set(tracked("services/*/storage/migrations/versions/*.py"))
    expected |= set(tracked("services/score/models/*/model.onnx"))
    expected |= set(tracked("services/score/models/*/model_card.json"))
    assert expected <= contents, sorted(expected - contents)
    # Every module of the services, too (a package without __init__.py would be left out).
    modules = {path for path in tracked("services/*.py") if "/training/" not in path}
    assert modules <= contents, sorted(modules - contents)


def test_the_build_context_lets_in_what_the_dockerfile_copies() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    ignore_lines = (REPOSITORY_ROOT / ".dockerignore").read_text().splitlines()
    copied = set()
    for line in dockerfile.splitlines():
        match = re.match(r"COPY (?!--from)(.+) \S+$", line)
        if match:
            copied.update(match[1].split())
    assert copied == {"constraints.txt", "pyproject.toml", "gen/python", "services"}
    assert ignore_lines[[line.strip() for line in ignore_lines].index("*")] == "*"
    for path in copied:
        assert f"!{path}" in ignore_lines or f"!{path}/" in ignore_lines, path
