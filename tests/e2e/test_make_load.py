"""`make load` against a running suite writes ghz's report, and every profile in deploy/ghz runs
against it without an error (shortened: two seconds, or forty requests)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from services.suite.launch import plaintext_suite
from tests.benchmarks.ghz_load import LoadProfile, iterate_profiles, prepared_profile, run_bundled
from tests.support.suite import REPOSITORY_ROOT, launched_suite

SCHEMA = json.loads((REPOSITORY_ROOT / "tests" / "fixtures" / "ghz_report.schema.json").read_text())


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    # The profiles' plaintext form (their `insecure` key); make load's TLS flags are not built.
    with launched_suite(
        tmp_path_factory.mktemp("load-suite"), {"SESAME_SCORE_WORKERS": "1", **plaintext_suite()}
    ) as addresses:
        yield addresses


def shortened(path: Path, directory: Path) -> Path:
    """The profile, shorter and gentler: this checks that it runs, not how fast (the machine
    running the tests may be busy with other work)."""
    raw = json.loads(path.read_text())
    raw["concurrency"] = min(raw.get("concurrency", 50), 4)
    raw["timeout"] = "60s"
    if "duration" in raw:
        raw["duration"] = "2s"
    else:
        raw["total"], raw["qps"] = 40, 20
    copy = directory / path.name
    copy.write_text(json.dumps(raw))
    return copy


def test_make_load_writes_a_ghz_report(suite: dict[str, str], tmp_path: Path) -> None:
    profile = shortened(REPOSITORY_ROOT / "deploy/ghz/ledger-get-account-summary.json", tmp_path)
    report_path = tmp_path / "report.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.benchmarks.ghz_load",
            "--bundled",
            "--target",
            suite["ledger"],
            "--config",
            str(profile),
            "--output",
            str(report_path),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={"PYTHONPATH": str(REPOSITORY_ROOT), "PATH": str(Path(sys.executable).parent)},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(report_path.read_text())
    jsonschema.validate(report, SCHEMA)
    assert report["count"] > 0
    assert report["statusCodeDistribution"] == {"OK": report["count"]}
    assert report["options"]["call"] == "sesame.ledger.v1.LedgerService.GetAccountSummary"
    assert 0 < report["fastest"] <= report["average"] <= report["slowest"]


@pytest.mark.slow
@pytest.mark.parametrize("path", list(iterate_profiles()), ids=lambda path: path.stem)
def test_every_profile_runs_without_an_error(
    suite: dict[str, str], path: Path, tmp_path: Path
) -> None:
    service = path.stem.split("-")[0]
    profile = LoadProfile.read(shortened(path, tmp_path))
    prepared = prepared_profile(profile, suite[service], tmp_path, suite["ledger"])
    report = run_bundled(prepared, suite[service])
    jsonschema.validate(report, SCHEMA)
    assert report["count"] > 0
    assert report["statusCodeDistribution"] == {"OK": report["count"]}, report["errorDistribution"]
