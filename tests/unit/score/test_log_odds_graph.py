"""The log-odds-only graph derived for scores without reasons: exact, or not there at all."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
from onnx import TensorProto, helper

from services.score.adapters.log_odds_graph import log_odds_only
from services.score.adapters.model_files import MODELS_ROOT, newest_model_directory
from services.score.adapters.onnx_model import load_onnx_model
from services.score.domain.features import FEATURE_COUNT

SERVING_MODEL = newest_model_directory(MODELS_ROOT)


def test_the_served_model_gets_a_smaller_graph_with_the_same_answers() -> None:
    model = load_onnx_model(SERVING_MODEL)
    rows = np.random.default_rng(5).uniform(0, 4, (3000, FEATURE_COUNT))
    rows[::2] = np.round(rows[::2])  # whole numbers sit on many split thresholds

    assert model.log_odds_session is not None
    probability, log_odds = model.probabilities_and_log_odds(rows)
    full = model.score_rows(rows)
    assert np.array_equal(probability, full.probability_of_default)
    assert np.array_equal(log_odds, full.log_odds_of_default)


def test_a_graph_of_another_shape_gets_none_and_the_full_graph_serves() -> None:
    identity = helper.make_graph(
        [helper.make_node("Identity", ["features"], ["log_odds_of_default"])],
        "other",
        [helper.make_tensor_value_info("features", TensorProto.DOUBLE, [None, FEATURE_COUNT])],
        [
            helper.make_tensor_value_info(
                "log_odds_of_default", TensorProto.DOUBLE, [None, FEATURE_COUNT]
            )
        ],
    )
    assert log_odds_only(helper.make_model(identity)) is None
    assert log_odds_only(onnx.ModelProto()) is None

    model = replace(load_onnx_model(SERVING_MODEL), log_odds_session=None)
    rows = np.ones((3, FEATURE_COUNT))
    probability, log_odds = model.probabilities_and_log_odds(rows)
    assert np.array_equal(log_odds, model.score_rows(rows).log_odds_of_default)
    assert np.array_equal(probability, model.score_rows(rows).probability_of_default)
