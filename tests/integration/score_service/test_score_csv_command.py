"""`make score-csv CSV=path` scores through a fresh suite and agrees with `make evaluate`."""

from __future__ import annotations

import subprocess
import sys

from services.score.adapters.model_files import REPOSITORY_ROOT

from .conftest import TAIWAN_SAMPLE


def result_lines(module: str) -> dict[str, float]:
    completed = subprocess.run(
        [sys.executable, "-m", module, str(TAIWAN_SAMPLE)],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    lines = [line.split() for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    return {name: float(value) for _, name, value in lines}


def test_the_auc_through_grpc_equals_the_offline_evaluation() -> None:
    served = result_lines("services.suite.score_csv")
    offline = result_lines("services.score.training.evaluate")

    assert served["users_scored"] == 8
    assert abs(served["auc_via_grpc"] - offline["auc"]) <= 1e-6
