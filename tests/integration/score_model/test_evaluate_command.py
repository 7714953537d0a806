"""`make evaluate CSV=path` scores a CSV through the serving path, with and without the credit
line, and ends with RESULT lines."""

from __future__ import annotations

import gzip
import itertools
import re
import subprocess
import sys
from pathlib import Path

from services.score.adapters.model_files import REPOSITORY_ROOT
from services.score.training.dataset import TRAINING_DATA

ROWS = 400


def test_evaluate_prints_auc_ks_and_brier_last(tmp_path: Path) -> None:
    sample = tmp_path / "sample.csv"
    with gzip.open(TRAINING_DATA, "rt", newline="") as source:
        sample.write_text("".join(itertools.islice(source, ROWS + 1)))

    completed = subprocess.run(
        [sys.executable, "-m", "services.score.training.evaluate", str(sample)],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )

    without_line = completed.stdout.strip().splitlines()[-4]
    assert re.fullmatch(r"RESULT auc_without_credit_line 0\.[0-9]+", without_line)
    last_lines = completed.stdout.strip().splitlines()[-3:]
    names = [line.split()[1] for line in last_lines]
    values = [float(line.split()[2]) for line in last_lines]
    assert all(re.fullmatch(r"RESULT [a-z]+ [0-9.]+", line) for line in last_lines)
    assert names == ["auc", "ks", "brier"]
    auc, ks, brier = values
    assert 0.7 < auc <= 1 and 0 < ks <= 1 and 0 < brier < 0.25
