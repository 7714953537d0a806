"""`make train` reproduces the committed model exactly: the same data and configuration give the
same ONNX bytes, model card, report and plots."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.score.adapters.model_files import MODELS_ROOT, newest_model_directory
from services.score.training.dataset import TRAINING_DATA
from services.score.training.train import TrainingConfig, train


@pytest.mark.slow
def test_retraining_gives_byte_identical_files(tmp_path: Path) -> None:
    committed = newest_model_directory(MODELS_ROOT)
    config = TrainingConfig()
    assert config.model_version == committed.name, "the committed model is the configured one"

    retrained = train(data_path=TRAINING_DATA, models_root=tmp_path, config=config, progress=False)

    assert (retrained / "model.onnx").read_bytes() == (committed / "model.onnx").read_bytes()
    committed_files = sorted(path.name for path in committed.iterdir())
    assert sorted(path.name for path in retrained.iterdir()) == committed_files
    for name in committed_files:
        assert (retrained / name).read_bytes() == (committed / name).read_bytes(), name
