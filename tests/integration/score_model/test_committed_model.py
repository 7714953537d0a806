"""The committed model loads in onnxruntime, keeps the model contract, and does what its model
card says: contributions that add up to its log-odds, parity with LightGBM, the AUC bar."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.datasets import taiwan
from services.score.adapters.model_files import (
    MODELS_ROOT,
    graph_feature_names,
    newest_model_directory,
    onnx_session,
    run_model,
)
from services.score.domain import model_contract, scoring
from services.score.domain.features import (
    FEATURE_COUNT,
    FEATURE_NAMES,
    FEATURES_READING_CREDIT_LINE,
    MONOTONE_CONSTRAINTS,
    compute_features,
)
from services.score.domain.reasons import principal_reasons
from services.score.training.dataset import (
    TRAINING_DATA,
    TRAINING_DATA_SHA256,
    csv_sha256,
    history_for_row,
)

TOLERANCE = model_contract.CONTRIBUTION_SUM_TOLERANCE
ROWS_CHECKED = 1500
AUC_TARGET = 0.78
# What withholding the credit line from training rows may cost the AUC of full histories.
FULL_INFORMATION_AUC_DROP_MAX = 0.003


@pytest.fixture(scope="module")
def model_directory() -> Path:
    return newest_model_directory(MODELS_ROOT)


@pytest.fixture(scope="module")
def card(model_directory: Path) -> dict[str, Any]:
    return json.loads((model_directory / model_contract.MODEL_CARD_FILE_NAME).read_text())


@pytest.fixture(scope="module")
def training_features() -> np.ndarray:
    rows = itertools.islice(taiwan.read_rows(TRAINING_DATA), ROWS_CHECKED)
    return np.array([compute_features(history_for_row(row)) for row in rows])


@pytest.fixture(scope="module")
def outputs(model_directory: Path, training_features: np.ndarray):  # type: ignore[no-untyped-def]
    session = onnx_session(model_directory / model_contract.MODEL_FILE_NAME)
    return run_model(session, training_features)


def test_the_newest_model_directory_holds_the_model_its_card_and_its_report(
    model_directory: Path, card: dict[str, Any]
) -> None:
    assert model_directory.name == card["model_version"]
    for name in (
        model_contract.MODEL_FILE_NAME,
        model_contract.REPORT_FILE_NAME,
        *card["report"]["plots"],
    ):
        assert (model_directory / name).is_file(), name
    report = (model_directory / model_contract.REPORT_FILE_NAME).read_text()
    assert all(f"]({plot})" in report for plot in card["report"]["plots"])


def test_the_card_describes_this_very_file_and_this_very_data(
    model_directory: Path, card: dict[str, Any]
) -> None:
    model_bytes = (model_directory / model_contract.MODEL_FILE_NAME).read_bytes()
    assert card["onnx"]["sha256"] == hashlib.sha256(model_bytes).hexdigest()
    assert card["data"]["csv_sha256"] == TRAINING_DATA_SHA256 == csv_sha256(TRAINING_DATA)


def test_the_graphs_feature_order_is_the_feature_definitions(
    model_directory: Path, card: dict[str, Any]
) -> None:
    assert graph_feature_names(model_directory / model_contract.MODEL_FILE_NAME) == FEATURE_NAMES
    assert card["onnx"]["feature_names"] == list(FEATURE_NAMES)
    assert [feature["name"] for feature in card["features"]] == list(FEATURE_NAMES)
    assert [feature["monotone_constraint"] for feature in card["features"]] == list(
        MONOTONE_CONSTRAINTS
    )


def test_no_protected_attribute_is_a_feature(card: dict[str, Any]) -> None:
    names = {feature["name"].upper() for feature in card["features"]}
    assert not names & set(card["protected_attributes"]["columns"])


def test_contributions_and_bias_add_up_to_the_log_odds_on_training_rows(outputs) -> None:  # type: ignore[no-untyped-def]
    explained = outputs.bias + outputs.contributions.sum(axis=1)

    assert outputs.contributions.shape == (ROWS_CHECKED, FEATURE_COUNT)
    assert np.max(np.abs(explained - outputs.log_odds_of_default)) <= TOLERANCE


def test_the_probability_is_the_logistic_function_of_the_log_odds(outputs) -> None:  # type: ignore[no-untyped-def]
    expected = [scoring.probability_from_log_odds(value) for value in outputs.log_odds_of_default]

    assert np.max(np.abs(outputs.probability_of_default - expected)) <= 1e-12


def test_the_card_records_parity_within_the_tolerance(card: dict[str, Any]) -> None:
    parity = card["parity"]

    assert parity["passed"] is True and parity["tolerance"] == TOLERANCE
    assert parity["training_rows"]["rows"] == card["data"]["rows"]
    assert parity["threshold_rows"]["rows"] > 0
    for rows in ("training_rows", "rows_without_credit_line", "threshold_rows"):
        for measure, error in parity[rows].items():
            if measure.startswith("max_abs"):
                assert error <= TOLERANCE, (rows, measure)


def test_the_card_shows_the_auc_bar_met_and_more_months_late_never_helping(
    card: dict[str, Any],
) -> None:
    assert card["cross_validation"]["folds"] == 5
    assert card["cross_validation"]["auc"]["mean"] >= AUC_TARGET
    assert card["monotonicity"]["variants"] > 0
    assert card["monotonicity"]["variants_with_lower_risk"] == 0


def test_the_card_shows_a_missing_credit_line_learnt_at_almost_no_cost_to_full_histories(
    card: dict[str, Any],
) -> None:
    withheld = card["credit_line_withheld"]

    assert 0 < withheld["share"] < 1 and withheld["rows"] > 0
    assert withheld["features_missing"] == list(FEATURES_READING_CREDIT_LINE)
    assert withheld["auc"]["with_credit_line"] == card["cross_validation"]["auc"]
    assert (
        withheld["auc"]["without_credit_line"]
        == card["cross_validation_without_credit_line"]["auc"]
    )
    before = withheld["before_withholding"]["auc"]["with_credit_line"]["mean"]
    assert withheld["full_information_auc_change"] == pytest.approx(
        card["cross_validation"]["auc"]["mean"] - before, abs=1e-5
    )
    assert withheld["full_information_auc_change"] >= -FULL_INFORMATION_AUC_DROP_MAX
    # Withholding taught the model something about histories without a line.
    assert (
        withheld["auc"]["without_credit_line"]["mean"]
        >= withheld["before_withholding"]["auc"]["without_credit_line"]["mean"]
    )
    assert card["parity"]["rows_without_credit_line"]["rows"] == card["data"]["rows"]


def test_the_card_shows_sesame_obligations_moving_the_risk_the_right_way(
    card: dict[str, Any],
) -> None:
    checked = card["monotonicity"]["sesame_obligations"]
    section = card["sesame_obligations"]

    assert checked["variants"] > 0
    assert checked["on_time_variants_with_higher_risk"] == 0
    assert checked["late_unpaid_or_defaulted_variants_with_lower_risk"] == 0
    assert checked["worse_outcome_with_lower_risk_than_better"] == 0
    assert section["default_months_late"] == section["training_data_months_late_max"]
    examples = {example["history"]: example for example in section["worked_examples"]}
    assert "thin_file" in examples["two monthly fees paid on time"]
    three = examples["three monthly fees paid on time"]
    defaulted = examples["three on time, then the fourth defaulted"]
    assert defaulted["score"] < three["score"]
    assert any("was not paid" in reason for reason in defaulted["reasons"])


def test_the_card_carries_the_evidence_the_issue_asks_for(card: dict[str, Any]) -> None:
    for section in (
        "calibration",
        "score_distribution",
        "population_stability",
        "baseline_scorecard",
        "fairness",
    ):
        assert card[section], section
    assert {"600", "650"} <= {str(threshold) for threshold in card["fairness"]["thresholds"]}
    assert set(card["fairness"]) >= {"sex", "age"}


def test_scores_and_reasons_come_from_one_pass(outputs, training_features) -> None:  # type: ignore[no-untyped-def]
    for index in range(0, ROWS_CHECKED, 97):
        contributions = outputs.contributions[index]
        reasons = principal_reasons(training_features[index], contributions)
        score = scoring.score_from_log_odds(outputs.log_odds_of_default[index])

        assert scoring.SCORE_MIN <= score <= scoring.SCORE_MAX
        assert len(reasons) <= 4
        assert all(reason.log_odds_contribution > 0 for reason in reasons)


def test_the_card_shows_monotone_features_at_an_accepted_auc_cost(card: dict[str, Any]) -> None:
    section = card["monotone_where_a_person_can_act"]

    assert all(feature["monotone_constraint"] != 0 for feature in card["features"])
    assert section["after"]["auc_with_credit_line"] == card["cross_validation"]["auc"]["mean"]
    assert section["auc_change_with_credit_line"] == pytest.approx(
        section["after"]["auc_with_credit_line"] - section["before"]["auc_with_credit_line"],
        abs=1e-5,
    )
    assert section["auc_change_with_credit_line"] >= -section["accepted_auc_cost"]


def test_the_card_states_the_reference_point_and_the_attribution(card: dict[str, Any]) -> None:
    reasons = card["reasons"]

    assert reasons["reference_point"]["score"] == 600
    assert set(reasons["reference_point"]["contributions"]) == set(card["onnx"]["feature_names"])
    assert "Saabas" in reasons["attribution"] and "not SHAP" in reasons["attribution"]


def test_the_card_audits_fairness_in_full_and_watches_drift(card: dict[str, Any]) -> None:
    fairness = card["fairness"]

    assert set(fairness) >= {"sex", "age", "education", "marriage", "credit_line_as_age_proxy"}
    for attribute in ("sex", "age", "education", "marriage"):
        for group in fairness[attribute]["groups"]:
            assert 0 <= group["mean_predicted_default_rate"] <= 1
    assert {400, 450, 575, 600} <= set(fairness["thresholds"])
    assert fairness["credit_line_as_age_proxy"]["choice"]
    drift = card["drift_reference"]
    assert set(drift["features"]) == set(card["onnx"]["feature_names"])
    assert drift["alert_threshold"] > 0
    assert card["intended_use"] and card["score_scale"]["highest_score"] <= 950
