"""Trains the score model: `python -m services.score.training.train` (or `make train`).

From the Taiwan training split in `data/taiwan-credit/` alone, it

1. turns every row into features through the ledger's contract (`dataset.py`), once as the row
   is and once with its credit line withheld, and withholds the line from a share of the rows
   (`credit_line_withheld_share`, drawn with the seed) so that the model learns to score a
   history without one: a user whose whole record is Sesame's own;
2. cross-validates a monotone-constrained LightGBM model on five stratified folds, choosing the
   number of boosting rounds where the folds' mean AUC peaks on the held-out rows with their
   lines (early stopping on the mean), and measures the same folds with the line withheld;
   then the same folds with no line withheld (the configuration of the model before), so the
   card shows what withholding costs a full history;
3. trains the final model on every row, the share withheld, with that number of rounds;
4. exports it to ONNX with exact per-feature contributions (`onnx_export.py`) and checks the
   graph against LightGBM on every training row, with and without its line, and on rows placed
   exactly at every split threshold; training fails when they differ by more than 1e-5;
5. checks that more months late never improves anyone's score, and that a Sesame obligation
   added to a training history moves the risk the right way: never up when paid on time, never
   down when paid late or defaulted;
6. fits the scorecard baseline on the same folds, audits fairness across sex, age band,
   education and marriage (and the credit line as a proxy for age), measures the reasons'
   reference profile and the drift reference,
   scores worked examples of Sesame's own record, and writes the model card and the report with
   its plots next to the model:
   `services/score/models/<version>/{model.onnx, model_card.json, report.md, *.png}`.

Everything is deterministic (fixed seed, one thread, LightGBM's deterministic mode, ordered
output), so the same data and configuration give byte-identical files; the slow test
`tests/integration/score_model/test_training_is_reproducible.py` proves it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import lightgbm
import numpy as np
import onnx
import onnxruntime
from numpy.typing import NDArray
from sklearn.model_selection import StratifiedKFold
from tqdm import tqdm

from services.datasets import taiwan
from services.score.adapters.model_files import (
    MODELS_ROOT,
    REPOSITORY_ROOT,
    onnx_session,
    run_model,
)
from services.score.domain import features as feature_definition, model_contract, scoring
from services.score.domain.history import CreditHistory, RepaymentStatus
from services.score.service import population_stability as drift
from services.score.training import (
    baseline,
    dataset,
    evidence,
    fulfilment_evidence,
    onnx_export,
    report,
)

PROTECTED_ATTRIBUTES = ("SEX", "EDUCATION", "MARRIAGE", "AGE")
# How many training rows the threshold rows are built on, and every how many rows the
# monotonicity check perturbs.
THRESHOLD_BASE_ROWS = 8
MONOTONICITY_ROW_STRIDE = 4
# Rows per onnxruntime call when the whole training set is scored.
ONNX_BATCH_ROWS = 4096
# Reasons are measured from the profile of the training rows scoring this (see
# `reason_reference`): the cut-off of the best band, 19:1 good:bad odds.
REFERENCE_SCORE = scoring.BASE_SCORE
# The model before the features were reshaped to be monotone where a person can act, and the
# cross-validated AUC that reshaping may cost.
PREVIOUS_MODEL_VERSION = "1.1.0"
MONOTONE_AUC_COST_ACCEPTED = 0.005
# Population stability index above which the drift alert fires (see the card's drift_reference).
DRIFT_ALERT_PSI = 0.25


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides the model besides the data. Changing it means a new version."""

    model_version: str = "1.2.0"
    seed: int = 20051001
    # The share of training rows whose credit line is withheld (see the module docstring).
    credit_line_withheld_share: float = 0.25
    fold_count: int = 5
    learning_rate: float = 0.02
    num_leaves: int = 15
    min_data_in_leaf: int = 200
    lambda_l2: float = 20.0
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    max_bin: int = 255
    monotone_constraints_method: str = "intermediate"
    boosting_rounds_max: int = 3000
    early_stopping_rounds: int = 200

    def lightgbm_parameters(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "metric": "auc",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "lambda_l2": self.lambda_l2,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "max_bin": self.max_bin,
            "monotone_constraints": list(feature_definition.MONOTONE_CONSTRAINTS),
            "monotone_constraints_method": self.monotone_constraints_method,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": 1,
            "verbosity": -1,
        }

    def sha256(self) -> str:
        return hashlib.sha256(_canonical_json(dataclasses.asdict(self)).encode()).hexdigest()


@dataclass(frozen=True)
class CrossValidation:
    boosting_rounds: int
    fold_of_row: NDArray[np.int64]
    # Held-out rows with their credit lines (the full information), and with the line withheld.
    out_of_fold_log_odds: NDArray[np.float64]
    out_of_fold_log_odds_without_credit_line: NDArray[np.float64]
    mean_auc_by_round: list[float]


class ParityError(AssertionError):
    """The ONNX graph does not reproduce LightGBM closely enough; nothing is written."""


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parse_arguments(argv)
    started = time.monotonic()
    output = train(
        data_path=arguments.data,
        models_root=arguments.models_root,
        config=TrainingConfig(),
        progress=not arguments.quiet,
    )
    elapsed_s = time.monotonic() - started
    print(f"model written to {_display_path(output)} in {elapsed_s:.0f} s")
    return 0


def _parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the score model and write its evidence.")
    parser.add_argument(
        "--data", type=Path, default=dataset.TRAINING_DATA, help="training CSV (.csv.gz)"
    )
    parser.add_argument(
        "--models-root", type=Path, default=MODELS_ROOT, help="where <version>/ is written"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def train(
    *, data_path: Path, models_root: Path, config: TrainingConfig, progress: bool = True
) -> Path:
    """Trains, checks and writes a model; returns its directory."""
    data_sha256 = dataset.csv_sha256(data_path)
    if (
        data_path.resolve() == dataset.TRAINING_DATA.resolve()
        and data_sha256 != dataset.TRAINING_DATA_SHA256
    ):
        raise SystemExit(
            f"{data_path}: sha256 {data_sha256}, expected {dataset.TRAINING_DATA_SHA256}"
        )
    steps = tqdm(total=9, desc="training", unit=" step", disable=not progress, position=0)

    steps.set_postfix_str("features")
    data = dataset.load_labelled_features(data_path, progress=progress)
    groups = dataset.load_protected_groups(data_path, data.client_ids)
    withheld = withheld_rows(len(data.labels), config)
    trained_features = training_features(data, withheld)
    steps.update()

    steps.set_postfix_str("cross-validation")
    validation = cross_validate(data, config, withheld, progress=progress)
    steps.update()

    steps.set_postfix_str("cross-validation, no line withheld")
    validation_before = cross_validate(data, config, None, progress=progress)
    steps.update()

    steps.set_postfix_str("final model")
    booster = final_booster(data, config, validation.boosting_rounds)
    reference = reason_reference(booster, trained_features, config)
    exported = onnx_export.export_booster(
        booster.dump_model(),
        feature_definition.FEATURE_NAMES,
        model_version=config.model_version,
        description=_model_description(config),
        reference_contributions=reference.contributions,
    )
    steps.update()

    steps.set_postfix_str("parity")
    parity = check_parity(booster, exported, trained_features, data.features_without_credit_line)
    steps.update()

    steps.set_postfix_str("monotonicity")
    monotonicity = check_monotonicity(data_path, booster)
    monotonicity["sesame_obligations"] = fulfilment_evidence.obligation_monotonicity(
        data_path, booster
    )
    steps.update()

    steps.set_postfix_str("scorecard baseline")
    baseline_log_odds = baseline.out_of_fold_log_odds(
        data.features,
        data.labels,
        validation.fold_of_row,
        feature_definition.FEATURE_NAMES,
        progress=progress,
    )
    steps.update()

    steps.set_postfix_str("Sesame's record")
    examples = fulfilment_evidence.worked_examples(onnx_session(exported.onnx_bytes))
    steps.update()

    steps.set_postfix_str("model card and report")
    card = build_model_card(
        config=config,
        data_path=data_path,
        data_sha256=data_sha256,
        data=data,
        groups=groups,
        withheld=withheld,
        validation=validation,
        validation_before=validation_before,
        booster=booster,
        exported=exported,
        parity=parity,
        monotonicity=monotonicity,
        baseline_log_odds=baseline_log_odds,
        examples=examples,
        reference=reference,
    )
    directory = models_root / config.model_version
    directory.mkdir(parents=True, exist_ok=True)
    (directory / model_contract.MODEL_FILE_NAME).write_bytes(exported.onnx_bytes)
    plots = report.write_plots(
        directory,
        labels=data.labels,
        log_odds=validation.out_of_fold_log_odds,
        baseline_log_odds=baseline_log_odds,
        fold_of_row=validation.fold_of_row,
        card=card,
    )
    card["report"] = {"file": model_contract.REPORT_FILE_NAME, "plots": plots}
    (directory / model_contract.MODEL_CARD_FILE_NAME).write_text(
        json.dumps(_rounded(card), indent=2, sort_keys=True, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    (directory / model_contract.REPORT_FILE_NAME).write_text(
        report.markdown(_rounded(card), plots), encoding="utf-8"
    )
    steps.update()
    steps.close()
    return directory


def stratified_folds(labels: NDArray[np.int64], config: TrainingConfig) -> NDArray[np.int64]:
    """The fold (0 .. fold_count - 1) each row is held out in, stratified on the label."""
    splitter = StratifiedKFold(n_splits=config.fold_count, shuffle=True, random_state=config.seed)
    fold_of_row = np.full(len(labels), -1, dtype=np.int64)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        fold_of_row[held_out] = fold
    assert (fold_of_row >= 0).all()
    return fold_of_row


def withheld_rows(row_count: int, config: TrainingConfig) -> NDArray[np.bool_]:
    """Which rows train without their credit line: one draw per row, in file order, from a
    generator seeded with the training seed; a row is withheld when its draw falls below the
    share."""
    generator = np.random.default_rng(config.seed)
    return generator.random(row_count) < config.credit_line_withheld_share


def training_features(
    data: dataset.LabelledFeatures, withheld: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """The rows the model trains on: each as it is, or without its credit line when withheld."""
    return np.where(withheld[:, np.newaxis], data.features_without_credit_line, data.features)


def cross_validate(
    data: dataset.LabelledFeatures,
    config: TrainingConfig,
    withheld: NDArray[np.bool_] | None,
    *,
    progress: bool = False,
) -> CrossValidation:
    """Five-fold CV with early stopping on the folds' mean AUC over the held-out rows with their
    credit lines; out-of-fold log-odds at the chosen number of rounds, with and without the line.

    The folds train on the rows as `training_features` gives them (`withheld` None: every row
    with its line). LightGBM's cv takes one data set, so it is given every row twice, with its
    line and without; each fold trains on one copy of each of its rows and is judged on the
    held-out rows' copies with the line."""
    row_count = len(data.labels)
    fold_of_row = stratified_folds(data.labels, config)
    if withheld is None:
        features, labels = data.features, data.labels
        withheld = np.zeros(row_count, dtype=np.bool_)
    else:
        features = np.concatenate((data.features, data.features_without_credit_line))
        labels = np.concatenate((data.labels, data.labels))
    folds = []
    for fold in range(config.fold_count):
        trained = np.flatnonzero(fold_of_row != fold)
        trained = np.sort(np.where(withheld[trained], trained + row_count, trained))
        folds.append((trained, np.flatnonzero(fold_of_row == fold)))
    bar = tqdm(
        total=config.boosting_rounds_max,
        desc="cross-validation",
        unit=" rounds",
        disable=not progress,
        leave=False,
    )
    result = lightgbm.cv(
        config.lightgbm_parameters(),
        _lightgbm_dataset(features, labels),
        num_boost_round=config.boosting_rounds_max,
        folds=folds,
        callbacks=[
            lightgbm.early_stopping(config.early_stopping_rounds, verbose=False),
            _progress_callback(bar),
        ],
        return_cvbooster=True,
    )
    bar.close()
    mean_auc_by_round = [float(value) for value in cast(list[float], result["valid auc-mean"])]
    boosting_rounds = len(mean_auc_by_round)
    cv_booster = cast(lightgbm.CVBooster, result["cvbooster"])
    assert cv_booster.best_iteration == boosting_rounds
    log_odds = np.full(row_count, np.nan)
    log_odds_without_line = np.full(row_count, np.nan)
    for fold_booster, (_, held_out) in zip(cv_booster.boosters, folds, strict=True):
        for rows, into in (
            (data.features, log_odds),
            (data.features_without_credit_line, log_odds_without_line),
        ):
            into[held_out] = fold_booster.predict(
                rows[held_out], raw_score=True, num_iteration=boosting_rounds
            )
    assert not np.isnan(log_odds).any() and not np.isnan(log_odds_without_line).any()
    return CrossValidation(
        boosting_rounds, fold_of_row, log_odds, log_odds_without_line, mean_auc_by_round
    )


def final_booster(
    data: dataset.LabelledFeatures, config: TrainingConfig, boosting_rounds: int
) -> lightgbm.Booster:
    """The model `make train` exports: all rows, the configured share with the line withheld."""
    withheld = withheld_rows(len(data.labels), config)
    return train_final(training_features(data, withheld), data.labels, config, boosting_rounds)


def train_final(
    features: NDArray[np.float64],
    labels: NDArray[np.int64],
    config: TrainingConfig,
    boosting_rounds: int,
) -> lightgbm.Booster:
    return lightgbm.train(
        config.lightgbm_parameters(),
        _lightgbm_dataset(features, labels),
        num_boost_round=boosting_rounds,
    )


def _lightgbm_dataset(features: NDArray[np.float64], labels: NDArray[np.int64]) -> lightgbm.Dataset:
    return lightgbm.Dataset(
        features,
        label=labels,
        feature_name=list(feature_definition.FEATURE_NAMES),
        free_raw_data=False,
    )


def _progress_callback(bar: tqdm) -> Callable[[Any], None]:
    def update(environment: Any) -> None:
        bar.update(1)

    return update


@dataclass(frozen=True)
class ReasonReference:
    """The profile reasons are measured from: the training rows (as trained) whose score before
    rounding is REFERENCE_SCORE or more, and their mean path contributions."""

    rows: int
    contributions: tuple[float, ...]
    log_odds: float


def reason_reference(
    booster: lightgbm.Booster, features: NDArray[np.float64], config: TrainingConfig
) -> ReasonReference:
    """Each feature's mean contribution over the training rows that score REFERENCE_SCORE or
    more (before rounding), from the graph without a reference."""
    plain = onnx_export.export_booster(
        booster.dump_model(),
        feature_definition.FEATURE_NAMES,
        model_version=config.model_version,
        description=_model_description(config),
    )
    outputs = run_model(onnx_session(plain.onnx_bytes), features, batch_rows=ONNX_BATCH_ROWS)
    unclamped = scoring.OFFSET - scoring.FACTOR * outputs.log_odds_of_default
    at_reference = unclamped >= REFERENCE_SCORE
    if not at_reference.any():
        raise ValueError(f"no training row scores {REFERENCE_SCORE}: no reference profile")
    contributions = outputs.contributions[at_reference].mean(axis=0)
    log_odds = float(outputs.bias[0] + contributions.sum())
    return ReasonReference(
        rows=int(at_reference.sum()),
        contributions=tuple(float(value) for value in contributions),
        log_odds=log_odds,
    )


def check_parity(
    booster: lightgbm.Booster,
    exported: onnx_export.ExportedModel,
    features: NDArray[np.float64],
    features_without_credit_line: NDArray[np.float64],
) -> dict[str, Any]:
    """ONNX against LightGBM on every training row as trained, on every training row with its
    credit line withheld, and on rows exactly at every split threshold (and one float64 step
    either side). Raises ParityError past the tolerance."""
    session = onnx_session(exported.onnx_bytes)
    tolerance = model_contract.CONTRIBUTION_SUM_TOLERANCE
    training = _compare(booster, session, features)
    without_line = _compare(booster, session, features_without_credit_line)
    threshold_rows = _threshold_rows(exported.splits, features)
    at_thresholds = _compare(booster, session, threshold_rows)
    parity = {
        "tolerance": tolerance,
        "training_rows": {"rows": len(features), **training},
        "rows_without_credit_line": {"rows": len(features_without_credit_line), **without_line},
        "threshold_rows": {
            "rows": len(threshold_rows),
            "splits": len(exported.splits),
            "built_from": (
                f"{THRESHOLD_BASE_ROWS} training rows, each feature set to every split threshold "
                "of that feature and to the nearest float64 values below and above it, where "
                "the feature's range holds them"
            ),
            **at_thresholds,
        },
    }
    worst = max(max(measured.values()) for measured in (training, without_line, at_thresholds))
    parity["passed"] = worst <= tolerance
    if not parity["passed"]:
        raise ParityError(f"ONNX differs from LightGBM by {worst:.3g} (> {tolerance}): {parity}")
    return parity


def _compare(
    booster: lightgbm.Booster, session: onnxruntime.InferenceSession, rows: NDArray[np.float64]
) -> dict[str, float]:
    expected_log_odds = booster.predict(rows, raw_score=True)
    expected_probability = booster.predict(rows)
    outputs = run_model(session, rows, batch_rows=ONNX_BATCH_ROWS)
    log_odds = outputs.log_odds_of_default
    explained = outputs.bias + outputs.contributions.sum(axis=1)
    return {
        "max_abs_log_odds_error": float(np.max(np.abs(log_odds - expected_log_odds))),
        "max_abs_probability_error": float(
            np.max(np.abs(outputs.probability_of_default - expected_probability))
        ),
        "max_abs_contribution_sum_error": float(np.max(np.abs(explained - log_odds))),
        "max_abs_contribution_sum_error_against_lightgbm": float(
            np.max(np.abs(explained - expected_log_odds))
        ),
    }


def _threshold_rows(
    splits: Sequence[onnx_export.TreeSplit], features: NDArray[np.float64]
) -> NDArray[np.float64]:
    base_rows = features[np.linspace(0, len(features) - 1, THRESHOLD_BASE_ROWS).astype(np.int64)]
    rows = []
    for split in splits:
        for value in (
            split.threshold,
            np.nextafter(split.threshold, -np.inf),
            np.nextafter(split.threshold, np.inf),
        ):
            if not feature_definition.FEATURES[split.feature].holds(float(value)):
                # No row the service scores holds it (refused as out of range): LightGBM's
                # splits between present and missing values sit at 1e300.
                continue
            placed = base_rows.copy()
            placed[:, split.feature] = value
            rows.append(placed)
    return np.concatenate(rows)


def check_monotonicity(data_path: Path, booster: lightgbm.Booster) -> dict[str, Any]:
    """For every fourth training row and each of its six months, makes that month one month
    later (a month that was not late becomes one month late) and checks the log-odds of default
    never falls. The constraints promise it; this shows it on real histories."""
    original_rows: list[tuple[float, ...]] = []
    later_rows: list[tuple[float, ...]] = []
    for index, row in enumerate(taiwan.read_rows(data_path)):
        if index % MONOTONICITY_ROW_STRIDE:
            continue
        history = dataset.history_for_row(row)
        original = feature_definition.compute_features(history)
        for month_index in range(len(history.statements)):
            original_rows.append(original)
            later_rows.append(
                feature_definition.compute_features(_one_month_later(history, month_index))
            )
    original_log_odds = np.asarray(booster.predict(np.array(original_rows), raw_score=True))
    later_log_odds = np.asarray(booster.predict(np.array(later_rows), raw_score=True))
    decrease = original_log_odds - later_log_odds
    return {
        "variants": len(later_rows),
        "built_from": (
            f"every {MONOTONICITY_ROW_STRIDE}th training row with each of its months made one "
            "month later in turn, a month that was not late becoming one month late"
        ),
        "variants_with_lower_risk": int(np.sum(decrease > 0)),
        "largest_decrease_in_log_odds": float(max(decrease.max(), 0.0)),
    }


def _one_month_later(history: CreditHistory, month_index: int) -> CreditHistory:
    statements = list(history.statements)
    statement = statements[month_index]
    statements[month_index] = dataclasses.replace(
        statement,
        repayment_status=RepaymentStatus.LATE,
        months_late=statement.months_late + 1,
    )
    return dataclasses.replace(history, statements=tuple(statements))


def build_model_card(
    *,
    config: TrainingConfig,
    data_path: Path,
    data_sha256: str,
    data: dataset.LabelledFeatures,
    groups: dataset.ProtectedGroups,
    withheld: NDArray[np.bool_],
    validation: CrossValidation,
    validation_before: CrossValidation,
    booster: lightgbm.Booster,
    exported: onnx_export.ExportedModel,
    parity: dict[str, Any],
    monotonicity: dict[str, Any],
    baseline_log_odds: NDArray[np.float64],
    examples: list[dict[str, Any]],
    reference: ReasonReference,
) -> dict[str, Any]:
    labels, log_odds = data.labels, validation.out_of_fold_log_odds
    importance = booster.feature_importance(importance_type="gain")
    session = onnx_session(exported.onnx_bytes)
    return {
        "model_version": config.model_version,
        "contract": model_contract.CONTRACT_VERSION,
        "purpose": (
            "Probability that a person misses a payment on revolving credit next month, from "
            "their repayment behaviour alone, as Sesame's 350-950 score with reasons."
        ),
        "data": {
            "file": _display_path(data_path),
            "csv_sha256": data_sha256,
            "rows": len(labels),
            "defaults": int(labels.sum()),
            "default_rate": float(labels.mean()),
            "source": (
                'The "default of credit card clients" data set (I-Cheng Yeh and Che-hui Lien, '
                "2009; UCI Machine Learning Repository, id 350; CC BY 4.0), its 24,000-row "
                "training split"
            ),
            "path_to_features": (
                "each row -> services.datasets.taiwan.to_credit_history (the ledger's "
                "GetCreditHistory answer for the replayed user) -> "
                "services.score.adapters.ledger_history.credit_history_from_proto -> "
                "services.score.domain.features.compute_features"
            ),
        },
        "features": [
            {
                "name": feature.name,
                "description": feature.description,
                "monotone_constraint": feature.monotonicity,
                "missing_without_credit_line": feature.reads_credit_line,
                "gain_share": float(gain / importance.sum()),
            }
            for feature, gain in zip(feature_definition.FEATURES, importance, strict=True)
        ],
        "protected_attributes": {
            "columns": list(PROTECTED_ATTRIBUTES),
            "use": ("never features; read apart, by client id, for the fairness audit"),
        },
        "scaling": {
            "base_score": scoring.BASE_SCORE,
            "base_good_bad_odds": scoring.BASE_GOOD_BAD_ODDS,
            "points_to_double_odds": scoring.POINTS_TO_DOUBLE_ODDS,
            "score_min": scoring.SCORE_MIN,
            "score_max": scoring.SCORE_MAX,
            "probability_of_default_at": {
                str(score): scoring.probability_at_score(score) for score in (550, 600, 650, 700)
            },
        },
        "training": {
            "library": f"lightgbm {lightgbm.__version__}",
            "config": dataclasses.asdict(config),
            "config_sha256": config.sha256(),
            "parameters": config.lightgbm_parameters(),
            "boosting_rounds": validation.boosting_rounds,
            "boosting_rounds_chosen_by": (
                f"{config.fold_count}-fold cross-validation: the round where the folds' mean AUC "
                f"peaks, stopping after {config.early_stopping_rounds} rounds without improvement"
            ),
            "trees": exported.tree_count,
            "leaves": exported.leaf_count,
        },
        "onnx": {
            "file": model_contract.MODEL_FILE_NAME,
            "sha256": hashlib.sha256(exported.onnx_bytes).hexdigest(),
            "bytes": len(exported.onnx_bytes),
            "library": f"onnx {onnx.__version__}",
            "opsets": {"ai.onnx": onnx_export.ONNX_OPSET, "ai.onnx.ml": onnx_export.ONNX_ML_OPSET},
            "input": {model_contract.INPUT_FEATURES: ["N", feature_definition.FEATURE_COUNT]},
            "outputs": {
                model_contract.OUTPUT_PROBABILITY_OF_DEFAULT: ["N", 1],
                model_contract.OUTPUT_LOG_ODDS_OF_DEFAULT: ["N", 1],
                model_contract.OUTPUT_CONTRIBUTIONS: ["N", feature_definition.FEATURE_COUNT],
                model_contract.OUTPUT_BIAS: ["N", 1],
            },
            "feature_names": list(feature_definition.FEATURE_NAMES),
            "contributions": (
                "per-tree path attributions (Saabas), precomputed per leaf and emitted by the same "
                "tree-ensemble node as the log-odds; bias + sum(contributions) = log-odds"
            ),
        },
        "cross_validation": {
            "folds": config.fold_count,
            "stratified_on": "the label",
            "seed": config.seed,
            "mean_auc_at_chosen_round": validation.mean_auc_by_round[-1],
            **evidence.cross_validation_summary(log_odds, labels, validation.fold_of_row),
        },
        "cross_validation_without_credit_line": {
            "rows": (
                "the same held-out rows with their credit line withheld, scored by the same fold "
                "models: how the model scores a history without a partner's line"
            ),
            **evidence.cross_validation_summary(
                validation.out_of_fold_log_odds_without_credit_line, labels, validation.fold_of_row
            ),
        },
        "credit_line_withheld": _withholding_evidence(
            config, withheld, validation, validation_before, labels
        ),
        "calibration": {
            "brier_out_of_fold": evidence.fold_metrics(log_odds, labels).brier,
            "by_score_band": evidence.calibration_by_band(log_odds, labels),
            "by_decile": evidence.calibration_by_decile(log_odds, labels),
        },
        "score_distribution": evidence.score_distribution(log_odds, labels),
        "population_stability": evidence.population_stability_between_folds(
            log_odds, validation.fold_of_row
        ),
        "baseline_scorecard": {
            "method": (
                "optbinning optimal binning (weight of evidence) of the same features, then "
                "logistic regression; same folds"
            ),
            **evidence.cross_validation_summary(baseline_log_odds, labels, validation.fold_of_row),
        },
        "fairness": _fairness(data, groups, validation),
        "contributions_by_value": {
            "model": "the final model, on every training row with its credit line",
            "features": evidence.contribution_profiles(
                data.features,
                run_model(session, data.features).contributions,
                feature_definition.FEATURE_NAMES,
            ),
            "without_credit_line": {
                "rows": "every training row with its credit line withheld",
                "mean_contribution": _mean_contributions_without_line(session, data),
            },
        },
        "sesame_obligations": fulfilment_evidence.card_section(
            training_months_late_max=int(
                data.features[:, feature_definition.FEATURE_NAMES.index("months_late_worst")].max()
            ),
            examples=examples,
        ),
        "intended_use": INTENDED_USE,
        "score_scale": _score_scale(log_odds),
        "reasons": _reasons_section(reference),
        "monotone_where_a_person_can_act": _monotone_reshaping(validation, labels, config),
        "drift_reference": _drift_reference(session, data.features),
        "parity": parity,
        "monotonicity": monotonicity,
        "evidence_from": (
            "out-of-fold predictions: every row scored by the fold model that did not see it"
        ),
        "limitations": [
            "Trained on one bank's card holders in Taiwan in 2005; the default rate (22%) is far "
            "above what a deposit-waiver population is expected to show, so most of this "
            "population scores below 600.",
            "Amounts are New Taiwan dollar cents; the credit line feature reads other currencies' "
            "minor units as if they were those.",
            "The training data holds no Sesame obligation, so the model never saw one: an "
            "obligation counts by being read as a partner statement's month of the same lateness "
            "(see sesame_obligations). This assumes that a kept or broken promise to Sesame says "
            "as much about a person as a card statement paid in full or the same number of months "
            "late, whatever the sum; a default on a 3-yuan bike fee weighs like the worst card "
            "delinquency. Outcomes of Sesame's own orders will show whether it holds, and a model "
            "trained on them should replace the assumption.",
            "A history without a credit line is scored by what the model learnt from Taiwan rows "
            "whose line was withheld: card holders with six months of statements. A user whose "
            "record is Sesame's alone has fewer, smaller obligations; the worked examples show "
            "how such histories score.",
            "Obligation amounts are read in the account's currency and added to a partner "
            "statement's amounts in the partner's for the payment ratios, without conversion.",
            "The scale sits low for this population: see score_scale for the share clamped at "
            "350 and the highest held-out score; the cut-offs above it approve no one here.",
            "Reasons rest on per-path (Saabas) attributions, not SHAP values (see reasons): "
            "a feature at its best value can carry a small positive share, and is then named "
            "as a strong point that counts for less, never blamed.",
            "Monotone constraints forbid what the data shows at the low end of use: a line "
            "barely used carries risk in these records, and the model may not learn it, "
            "because the only way a person could act on it is to borrow more.",
            "Under-25s are approved far less often at the higher cut-offs (fairness.age), while "
            "their predicted and observed default rates agree; the credit line stands partly "
            "for age (fairness.credit_line_as_age_proxy), and the card records the choice made.",
            "Drift is measured against training rows that all carry a partner's credit line; a "
            "live population with many Sesame-only users shows as drift in the features read "
            "against the line, as it should.",
        ],
    }


INTENDED_USE = (
    "Sesame's own decisions on deposit waivers: how much of a merchant's deposit a user's kept "
    "promises stand in for, with the probability of default pricing the waiver against a "
    "scenario's expected-loss budget. Not for lending, pricing credit or any decision about a "
    "person outside Sesame, and never shown to merchants. Checked at the waiver's minimum "
    "scores and the simulation's flat rules: " + ", ".join(map(str, evidence.FAIRNESS_THRESHOLDS))
)


def _score_scale(log_odds: NDArray[np.float64]) -> dict[str, Any]:
    """Where the scale sits for this population, on held-out rows."""
    unclamped = scoring.OFFSET - scoring.FACTOR * log_odds
    scores = evidence.scores_from_log_odds(log_odds)
    return {
        "rows": "out-of-fold scores of every training row",
        "share_clamped_at_min": float((unclamped < scoring.SCORE_MIN - 0.5).mean()),
        "share_clamped_at_max": float((unclamped >= scoring.SCORE_MAX + 0.5).mean()),
        "lowest_score": int(scores.min()),
        "highest_score": int(scores.max()),
        "share_at_or_above": {
            str(cut_off): float((scores >= cut_off).mean())
            for cut_off in evidence.FAIRNESS_THRESHOLDS
        },
    }


def _reasons_section(reference: ReasonReference) -> dict[str, Any]:
    return {
        "reference_point": {
            "score": REFERENCE_SCORE,
            "what": (
                f"the mean path contributions of the {reference.rows} training rows (as trained, "
                f"a share without their credit line) scoring {REFERENCE_SCORE} or more before "
                f"rounding: the histories at the cut-off of the best band ({REFERENCE_SCORE}, "
                "19:1 good:bad odds). The graph's contributions are measured from it and its "
                "bias is its log-odds, so a contribution says how much a feature moved the "
                "log-odds away from that profile's, as a scorecard counts points below a "
                "reference; they add up to the row's log-odds minus the reference's, and the "
                f"reference's log-odds scores {REFERENCE_SCORE} or more, so every score below "
                f"{REFERENCE_SCORE} has at least one positive contribution, and so at least one "
                "reason"
            ),
            "log_odds": reference.log_odds,
            "contributions": dict(
                zip(feature_definition.FEATURE_NAMES, reference.contributions, strict=True)
            ),
        },
        "attribution": (
            "per-path (Saabas) attributions, not SHAP values: at every split on a row's path the "
            "change in the node's expected value goes to the split's feature. They are exact in "
            "sum (bias + contributions = log-odds, checked on every training row) and come from "
            "the same pass over the trees as the score, so reasons cost no extra model run; "
            "unlike SHAP they can favour features split near the root and are not consistent "
            "under every change of the model. Acceptable here because they only rank the "
            "reasons: every feature is monotone, so a feature whose value is no worse than the "
            "reference's rarely gets a positive share, and the advice a person is given is "
            "checked by rescoring the changed history with the model itself, never read off the "
            "attributions"
        ),
        "reasons_given": (
            "the features with the largest positive contributions, at most four, largest first, "
            "each with a sentence and advice in English and Chinese (every feature has one for "
            "every value)"
        ),
    }


def _monotone_reshaping(
    validation: CrossValidation, labels: NDArray[np.int64], config: TrainingConfig
) -> dict[str, Any]:
    """The cross-validated AUC before (the previous model's card: same rows, folds and seed)
    and after the features were made monotone where a person can act."""
    previous = json.loads(
        (MODELS_ROOT / PREVIOUS_MODEL_VERSION / model_contract.MODEL_CARD_FILE_NAME).read_text(
            encoding="utf-8"
        )
    )
    before = {
        "model_version": PREVIOUS_MODEL_VERSION,
        "auc_with_credit_line": previous["cross_validation"]["auc"]["mean"],
        "auc_without_credit_line": previous["cross_validation_without_credit_line"]["auc"]["mean"],
        "features": [feature["name"] for feature in previous["features"]],
    }
    summary = evidence.cross_validation_summary(
        validation.out_of_fold_log_odds, labels, validation.fold_of_row
    )
    summary_without = evidence.cross_validation_summary(
        validation.out_of_fold_log_odds_without_credit_line, labels, validation.fold_of_row
    )
    after = {
        "model_version": config.model_version,
        "auc_with_credit_line": summary["auc"]["mean"],
        "auc_without_credit_line": summary_without["auc"]["mean"],
    }
    return {
        "what": (
            "with everything else held, paying more never lowers a score, a late month never "
            "raises it and a larger credit line never lowers it: every feature is constrained "
            "(LightGBM monotone constraints) and moves one way under each of these; utilisation "
            "counts a credit balance as 0 and may only raise the risk; the features that could "
            "move either way (the balance's six-month change, new purchases and payments as "
            "shares of the line) are dropped"
        ),
        "dropped_features": sorted(set(before["features"]) - set(feature_definition.FEATURE_NAMES)),
        "before": before,
        "after": after,
        "auc_change_with_credit_line": (
            after["auc_with_credit_line"] - before["auc_with_credit_line"]
        ),
        "auc_change_without_credit_line": (
            after["auc_without_credit_line"] - before["auc_without_credit_line"]
        ),
        "accepted_auc_cost": MONOTONE_AUC_COST_ACCEPTED,
    }


def _fairness(
    data: dataset.LabelledFeatures, groups: dataset.ProtectedGroups, validation: CrossValidation
) -> dict[str, Any]:
    """The audit over sex, age band, education and marriage, and the credit line as a proxy
    for age: the same fold models with and without the line."""
    age_names = evidence.age_group_names(groups.age)
    audit = evidence.fairness_audit(
        validation.out_of_fold_log_odds,
        data.labels,
        {
            "sex": evidence.group_names(groups.sex, evidence.SEX_GROUP_NAMES),
            "age": age_names,
            "education": evidence.group_names(groups.education, evidence.EDUCATION_GROUP_NAMES),
            "marriage": evidence.group_names(groups.marriage, evidence.MARRIAGE_GROUP_NAMES),
        },
    )
    line_index = feature_definition.FEATURE_NAMES.index("credit_line")
    proxy = evidence.credit_line_as_age_proxy(
        validation.out_of_fold_log_odds,
        validation.out_of_fold_log_odds_without_credit_line,
        data.labels,
        data.features[:, line_index],
        age_names,
    )
    proxy["choice"] = _credit_line_choice(proxy)
    audit["credit_line_as_age_proxy"] = proxy
    return audit


def _credit_line_choice(proxy: dict[str, Any]) -> str:
    cut_off = str(REFERENCE_SCORE)
    with_line = proxy["with_credit_line"][cut_off]
    without_line = proxy["without_credit_line"][cut_off]
    lowest_with, lowest_without = with_line["lowest_ratio"], without_line["lowest_ratio"]
    auc_cost = proxy["auc_with_credit_line"] - proxy["auc_without_credit_line"]
    restores = lowest_without is not None and lowest_without >= evidence.FOUR_FIFTHS
    return (
        f"The credit line is kept. Scoring every held-out row without it, the lowest age band's "
        f"approval ratio at {cut_off} is {_ratio_text(lowest_without)} against "
        f"{_ratio_text(lowest_with)} with it, at an AUC cost of {auc_cost:.4f}; "
        + (
            "withholding the line would meet the four-fifths rule at this cut-off, but "
            if restores
            else "withholding the line does not bring the age bands within four-fifths, and "
        )
        + "the line is what the lender who watched the account granted, the bands are as well "
        "calibrated with it (the audit's mean predicted against observed default rates), and a "
        "person can raise it by a record a lender rewards. Under-25s' low approval at the "
        "higher cut-offs is recorded as a limitation; the waiver's thin-file starter waiver and "
        "low minimum scores for small deposits are where young users start a record."
    )


def _ratio_text(ratio: float | None) -> str:
    return "not applicable (nobody approved)" if ratio is None else f"{ratio:.2f}"


def _drift_reference(
    session: onnxruntime.InferenceSession, features: NDArray[np.float64]
) -> dict[str, Any]:
    """What live scores are compared with: each feature's bins (the deciles of the training
    rows, with their credit lines) and shares, and the final model's score bands on them."""
    outputs = run_model(session, features, batch_rows=ONNX_BATCH_ROWS)
    scores = evidence.scores_from_log_odds(outputs.log_odds_of_default)
    by_feature = {}
    for index, name in enumerate(feature_definition.FEATURE_NAMES):
        edges = drift.decile_edges(features[:, index])
        by_feature[name] = {
            "edges": edges,
            "shares": drift.bin_shares(features[:, index], edges).tolist(),
        }
    score_edges = [float(edge) - 0.5 for edge in evidence.SCORE_BAND_EDGES[1:-1]]
    return {
        "rows": (
            "every training row with its credit line (withholding the line from a share of the "
            "rows is a training device, not the population); users without a line show as "
            "drift in the features read against it"
        ),
        "features": by_feature,
        "score": {
            "edges": score_edges,
            "shares": drift.bin_shares(scores.astype(np.float64), score_edges).tolist(),
        },
        "alert_threshold": DRIFT_ALERT_PSI,
        "reading": (
            "population stability index over the live window: below 0.10 stable, 0.10 to 0.25 "
            f"worth a look, above {DRIFT_ALERT_PSI} the alert fires: the population has moved "
            "away from the one the model was trained and calibrated on"
        ),
    }


def _withholding_evidence(
    config: TrainingConfig,
    withheld: NDArray[np.bool_],
    validation: CrossValidation,
    validation_before: CrossValidation,
    labels: NDArray[np.int64],
) -> dict[str, Any]:
    """What withholding the line from a share of the rows did: the same folds trained with no
    line withheld (the configuration of the model before) against this model, each judged on
    the held-out rows with and without their lines."""

    def auc(log_odds: NDArray[np.float64], fold_of_row: NDArray[np.int64]) -> dict[str, Any]:
        summary: dict[str, Any] = evidence.cross_validation_summary(log_odds, labels, fold_of_row)
        return cast(dict[str, Any], summary["auc"])

    with_line = auc(validation.out_of_fold_log_odds, validation.fold_of_row)
    with_line_before = auc(validation_before.out_of_fold_log_odds, validation_before.fold_of_row)
    return {
        "share": config.credit_line_withheld_share,
        "rows": int(withheld.sum()),
        "chosen_by": (
            "one draw per row, in file order, from numpy's default generator seeded with the "
            "training seed; a row's line is withheld when its draw falls below the share"
        ),
        "features_missing": list(feature_definition.FEATURES_READING_CREDIT_LINE),
        "why": (
            "a user whose whole record is Sesame's own has no partner's credit line; the model "
            "learns what a missing line means from rows like that (LightGBM sends a missing value "
            "down the side of each split it learnt), while the rest of the rows keep what a full "
            "history teaches"
        ),
        "auc": {
            "with_credit_line": with_line,
            "without_credit_line": auc(
                validation.out_of_fold_log_odds_without_credit_line, validation.fold_of_row
            ),
        },
        "before_withholding": {
            "what": (
                "the same folds, parameters and early stopping with no line withheld: the "
                "configuration of model 1.0.0; without the line, its folds read the missing "
                "values as 0, the only way a model that never saw one can"
            ),
            "boosting_rounds": validation_before.boosting_rounds,
            "auc": {
                "with_credit_line": with_line_before,
                "without_credit_line": auc(
                    validation_before.out_of_fold_log_odds_without_credit_line,
                    validation_before.fold_of_row,
                ),
            },
        },
        "full_information_auc_change": with_line["mean"] - with_line_before["mean"],
    }


def _mean_contributions_without_line(
    session: onnxruntime.InferenceSession, data: dataset.LabelledFeatures
) -> dict[str, float]:
    contributions = run_model(session, data.features_without_credit_line).contributions
    return {
        name: float(contributions[:, index].mean())
        for index, name in enumerate(feature_definition.FEATURE_NAMES)
        if name in feature_definition.FEATURES_READING_CREDIT_LINE
    }


def _model_description(config: TrainingConfig) -> str:
    return (
        f"Sesame score model {config.model_version}: LightGBM (binary, monotone constraints, "
        "a missing credit line learnt) "
        "with per-feature contributions. See model_card.json."
    )


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _rounded(value: Any, digits: int = 6) -> Any:
    """Floats rounded to `digits` significant digits, so the card reads well and diffs calmly."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {key: _rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(item, digits) for item in value]
    return value


def _display_path(path: Path) -> str:
    """A path relative to the repository when it lies inside it, so no machine path is written."""
    try:
        return path.resolve().relative_to(REPOSITORY_ROOT).as_posix()
    except ValueError:
        return path.name


if __name__ == "__main__":
    sys.exit(main())
