"""A shadow model scores what the served model scores, is measured, and is never served."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from services.common.history_cache import HistoryCache
from services.score.adapters.model_files import MODELS_ROOT, newest_model_directory
from services.score.adapters.onnx_model import load_onnx_model
from services.score.domain.features import FEATURE_COUNT
from services.score.domain.scoring import FACTOR
from services.score.service.score_service import CachedUser, ScoreService
from services.score.service.shadow import ShadowScorer

from .test_score_service import AS_OF, FakeLedger, models_from

WAIT_S = 5.0
# Added to the bias and to the log-odds of every row: the shadow is 0.5 log-odds riskier.
LOG_ODDS_SHIFT = 0.5


class ListRecorder:
    def __init__(self) -> None:
        self.pairs: list[tuple[int, int]] = []
        self.drops = 0

    def compared(self, served_score: int, shadow_score: int) -> None:
        self.pairs.append((served_score, shadow_score))

    def dropped(self) -> None:
        self.drops += 1


def write_riskier_model(models_root: Path, version: str) -> None:
    """A copy of the served model whose first tree adds LOG_ODDS_SHIFT to the bias and the
    log-odds targets, so its contributions still add up and it passes warm-up."""
    directory = models_root / version
    shutil.copytree(newest_model_directory(MODELS_ROOT), directory)
    model = onnx.load(str(directory / "model.onnx"))
    ensemble = next(node for node in model.graph.node if node.op_type == "TreeEnsembleRegressor")
    attributes = {attribute.name: attribute for attribute in ensemble.attribute}
    bias_target, log_odds_target = attributes["n_targets"].i - 2, attributes["n_targets"].i - 1
    weights = numpy_helper.to_array(attributes["target_weights_as_tensor"].t).copy()
    for index, (tree, target) in enumerate(
        zip(attributes["target_treeids"].ints, attributes["target_ids"].ints, strict=True)
    ):
        if tree == 0 and target in (bias_target, log_odds_target):
            weights[index] += LOG_ODDS_SHIFT
    attributes["target_weights_as_tensor"].t.CopyFrom(
        numpy_helper.from_array(weights, "target_weights")
    )
    onnx.save(model, str(directory / "model.onnx"))


@pytest.fixture
def models_root(tmp_path: Path) -> Path:
    shutil.copytree(newest_model_directory(MODELS_ROOT), tmp_path / "1.0.0")
    write_riskier_model(tmp_path, "1.1.0")
    return tmp_path


def wait_for(recorder: ListRecorder, count: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while len(recorder.pairs) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_every_new_score_is_compared_with_the_shadow_and_the_served_score_stays(
    models_root: Path,
) -> None:
    recorder = ListRecorder()
    models = models_from(models_root)
    models.load_initial("1.0.0")
    models.start_shadow("1.1.0", recorder)
    service = ScoreService(FakeLedger(), HistoryCache[CachedUser](), models)

    served = service.get_score("known", AS_OF)
    service.get_score("known", AS_OF)  # from the cache: not compared twice
    wait_for(recorder, 1)
    service.close()
    models.close()

    assert served.model_version == "1.0.0"
    assert models.shadow_model_version == "1.1.0"
    assert len(recorder.pairs) == 1
    served_score, shadow_score = recorder.pairs[0]
    assert served_score == served.score
    assert shadow_score == pytest.approx(served.score - LOG_ODDS_SHIFT * FACTOR, abs=1)


def test_a_shadow_that_cannot_load_leaves_serving_alone(models_root: Path) -> None:
    (models_root / "1.1.0" / "model.onnx").write_bytes(b"not a graph")
    models = models_from(models_root)
    models.load_initial("1.0.0")
    service = ScoreService(FakeLedger(), HistoryCache[CachedUser](), models)

    models.start_shadow("1.1.0", ListRecorder())

    assert models.shadow_model_version == ""
    assert 350 <= service.get_score("known", AS_OF).score <= 950


def test_a_shadow_that_falls_behind_drops_comparisons_instead_of_slowing_calls() -> None:
    recorder = ListRecorder()
    shadow = ShadowScorer(
        load_onnx_model(newest_model_directory(MODELS_ROOT)), recorder, queue_size=1
    )
    features = tuple(np.ones(FEATURE_COUNT).tolist())

    for _ in range(200):
        shadow.offer(features, 600)
    shadow.stop()

    assert recorder.drops > 0
    assert len(recorder.pairs) + recorder.drops == 200
