"""The exported graph routes rows exactly like LightGBM, thresholds and edge values included, and
its contributions add up to its log-odds."""

from __future__ import annotations

import json

import lightgbm
import numpy as np
import onnx
import pytest

from services.score.adapters.model_files import onnx_session, run_model
from services.score.domain import model_contract
from services.score.domain.features import FEATURE_COUNT, FEATURE_NAMES
from services.score.training.onnx_export import (
    LIGHTGBM_ZERO_THRESHOLD,
    UnsupportedModelError,
    export_booster,
)

TOLERANCE = model_contract.CONTRIBUTION_SUM_TOLERANCE


@pytest.fixture(scope="module")
def booster() -> lightgbm.Booster:
    """A small model on synthetic data shaped like the features, with values that sit on and
    around zero so LightGBM places splits at its +-1e-35 zero threshold."""
    generator = np.random.default_rng(11)
    rows = generator.normal(size=(3000, FEATURE_COUNT))
    rows[:, 1] = np.round(rows[:, 1])
    rows[::3, 2] = 0.0
    # A feature that never varies is never split on.
    rows[:, -1] = 0.0
    logit = 1.5 * rows[:, 0] - rows[:, 1] + np.where(rows[:, 2] > 0, 1.0, -0.5) + rows[:, 3] ** 2
    labels = (generator.random(3000) < 1 / (1 + np.exp(-logit))).astype(int)
    parameters = {
        "objective": "binary",
        "num_leaves": 15,
        "learning_rate": 0.1,
        "min_data_in_leaf": 20,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "seed": 3,
        "verbosity": -1,
    }
    dataset = lightgbm.Dataset(rows, labels, feature_name=list(FEATURE_NAMES))
    return lightgbm.train(parameters, dataset, num_boost_round=40)


@pytest.fixture(scope="module")
def exported(booster: lightgbm.Booster):  # type: ignore[no-untyped-def]
    return export_booster(
        booster.dump_model(), FEATURE_NAMES, model_version="0.0.1", description="test"
    )


def lightgbm_and_onnx(booster, exported, rows):  # type: ignore[no-untyped-def]
    outputs = run_model(onnx_session(exported.onnx_bytes), rows)
    return booster.predict(rows, raw_score=True), outputs


def test_graph_reproduces_lightgbm_on_ordinary_rows(booster, exported) -> None:  # type: ignore[no-untyped-def]
    rows = np.random.default_rng(5).normal(size=(2000, FEATURE_COUNT))

    expected, outputs = lightgbm_and_onnx(booster, exported, rows)

    assert np.max(np.abs(outputs.log_odds_of_default - expected)) < TOLERANCE
    assert np.max(np.abs(outputs.probability_of_default - booster.predict(rows))) < TOLERANCE


def test_rows_exactly_at_each_threshold_go_where_lightgbm_sends_them(booster, exported) -> None:  # type: ignore[no-untyped-def]
    base = np.random.default_rng(6).normal(size=(4, FEATURE_COUNT))
    rows = []
    for split in exported.splits:
        for value in (
            split.threshold,
            np.nextafter(split.threshold, -np.inf),
            np.nextafter(split.threshold, np.inf),
            float(np.float32(split.threshold)),
        ):
            placed = base.copy()
            placed[:, split.feature] = value
            rows.append(placed)
    rows_array = np.concatenate(rows)

    expected, outputs = lightgbm_and_onnx(booster, exported, rows_array)

    assert any(abs(split.threshold) == LIGHTGBM_ZERO_THRESHOLD for split in exported.splits)
    assert np.max(np.abs(outputs.log_odds_of_default - expected)) < TOLERANCE


def test_nan_and_tiny_values_are_read_as_zero_like_lightgbm(booster, exported) -> None:  # type: ignore[no-untyped-def]
    rows = np.random.default_rng(8).normal(size=(200, FEATURE_COUNT))
    rows[::2, 2] = np.nan
    rows[1::4, 2] = 1e-36
    rows[3::4, 2] = -1e-36

    expected, outputs = lightgbm_and_onnx(booster, exported, rows)

    assert np.max(np.abs(outputs.log_odds_of_default - expected)) < TOLERANCE


def test_contributions_and_bias_add_up_to_the_log_odds(booster, exported) -> None:  # type: ignore[no-untyped-def]
    rows = np.random.default_rng(9).normal(size=(1000, FEATURE_COUNT))

    _, outputs = lightgbm_and_onnx(booster, exported, rows)

    explained = outputs.bias + outputs.contributions.sum(axis=1)
    assert np.max(np.abs(explained - outputs.log_odds_of_default)) < TOLERANCE
    # The bias is the average tree output, the same for every row.
    assert np.ptp(outputs.bias) == 0.0


def test_the_bias_is_the_models_expected_log_odds(booster, exported) -> None:  # type: ignore[no-untyped-def]
    rows = np.random.default_rng(10).normal(size=(10, FEATURE_COUNT))

    _, outputs = lightgbm_and_onnx(booster, exported, rows)

    # LightGBM's own SHAP values use the same expectation for their base value.
    shap_base = booster.predict(rows, pred_contrib=True)[0, -1]
    assert outputs.bias[0] == pytest.approx(shap_base, abs=1e-6)


def test_features_the_model_never_split_on_contribute_nothing(booster, exported) -> None:  # type: ignore[no-untyped-def]
    rows = np.random.default_rng(12).normal(size=(300, FEATURE_COUNT))
    unused = np.flatnonzero(booster.feature_importance(importance_type="split") == 0)

    _, outputs = lightgbm_and_onnx(booster, exported, rows)

    assert len(unused) > 0
    assert np.all(outputs.contributions[:, unused] == 0.0)


def test_the_graph_carries_the_feature_order_and_version(exported) -> None:  # type: ignore[no-untyped-def]
    model = onnx.load_from_string(exported.onnx_bytes)
    metadata = {entry.key: entry.value for entry in model.metadata_props}

    assert json.loads(metadata[model_contract.METADATA_FEATURE_NAMES]) == list(FEATURE_NAMES)
    assert metadata[model_contract.METADATA_MODEL_VERSION] == "0.0.1"
    assert [node.op_type for node in model.graph.node].count("TreeEnsembleRegressor") == 1


def test_exporting_twice_gives_the_same_bytes(booster, exported) -> None:  # type: ignore[no-untyped-def]
    again = export_booster(
        booster.dump_model(), FEATURE_NAMES, model_version="0.0.1", description="test"
    )
    assert again.onnx_bytes == exported.onnx_bytes


@pytest.fixture(scope="module")
def booster_with_missing_values() -> lightgbm.Booster:
    """A small model that learnt missing values: feature 4 is NaN in a third of the rows, and a
    missing value means more risk, so splits on it send NaN one way or the other."""
    generator = np.random.default_rng(21)
    rows = generator.normal(size=(3000, FEATURE_COUNT))
    missing = generator.random(3000) < 1 / 3
    logit = rows[:, 0] + np.where(missing, 1.0, -rows[:, 4])
    rows[missing, 4] = np.nan
    labels = (generator.random(3000) < 1 / (1 + np.exp(-logit))).astype(int)
    parameters = {
        "objective": "binary",
        "num_leaves": 15,
        "learning_rate": 0.1,
        "min_data_in_leaf": 20,
        "monotone_constraints": [0, 0, 0, 0, -1] + [0] * (FEATURE_COUNT - 5),
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "seed": 5,
        "verbosity": -1,
    }
    dataset = lightgbm.Dataset(rows, labels, feature_name=list(FEATURE_NAMES))
    return lightgbm.train(parameters, dataset, num_boost_round=40)


def test_missing_values_go_where_lightgbm_learnt_to_send_them(booster_with_missing_values) -> None:  # type: ignore[no-untyped-def]
    booster = booster_with_missing_values
    dump = booster.dump_model()
    exported = export_booster(dump, FEATURE_NAMES, model_version="0.0.1", description="test")
    missing_types = {
        (split["split_feature"], split["missing_type"], split["default_left"])
        for split in _splits(dump)
    }
    rows = np.random.default_rng(22).normal(size=(600, FEATURE_COUNT))
    rows[::2, 4] = np.nan
    rows[1::3, 0] = np.nan  # a feature that never had a missing value reads NaN as 0

    outputs = run_model(onnx_session(exported.onnx_bytes), rows)

    assert (4, "NaN", True) in missing_types or (4, "NaN", False) in missing_types
    assert {missing_type for feature, missing_type, _ in missing_types if feature == 0} == {"None"}
    expected = booster.predict(rows, raw_score=True)
    assert np.max(np.abs(outputs.log_odds_of_default - expected)) < TOLERANCE
    explained = outputs.bias + outputs.contributions.sum(axis=1)
    assert np.max(np.abs(explained - outputs.log_odds_of_default)) < TOLERANCE


def test_a_split_that_reads_zero_as_missing_is_refused(booster) -> None:  # type: ignore[no-untyped-def]
    dump = booster.dump_model()
    dump["tree_info"][0]["tree_structure"]["missing_type"] = "Zero"

    with pytest.raises(UnsupportedModelError, match="zero as missing"):
        export_booster(dump, FEATURE_NAMES, model_version="0.0.1", description="test")


def _splits(dump):  # type: ignore[no-untyped-def]
    pending = [tree["tree_structure"] for tree in dump["tree_info"]]
    while pending:
        node = pending.pop()
        if "leaf_value" not in node:
            yield node
            pending += [node["left_child"], node["right_child"]]


def test_a_model_with_other_feature_names_is_refused(booster) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnsupportedModelError, match="feature"):
        export_booster(
            booster.dump_model(),
            tuple(reversed(FEATURE_NAMES)),
            model_version="0.0.1",
            description="test",
        )
