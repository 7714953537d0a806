"""The reasons are the reasons, for any history: the features with the largest positive
contributions (measured from the reference profile at 600), at most four, largest first; every
score below 600 gets at least one; every reason has a sentence in English and Chinese whose
numbers are bounded. Generated histories and the Taiwan sample go through the feature function
and the newest committed model's graph, as the service scores them."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings

from services.score.adapters.model_files import (
    MODELS_ROOT,
    REPOSITORY_ROOT,
    newest_model_directory,
    onnx_session,
    run_model,
)
from services.score.domain import model_contract, scoring
from services.score.domain.features import FEATURE_NAMES, FEATURES, compute_features
from services.score.domain.history import CreditHistory
from services.score.domain.reasons import (
    REASON_CONTRIBUTION_MIN,
    REASONS_MAX,
    principal_reasons,
)
from services.score.training import dataset
from tests.support.credit_histories import histories

TAIWAN_SAMPLE = REPOSITORY_ROOT / "tests" / "fixtures" / "taiwan_sample.csv"
REFERENCE_SCORE = 600
CHINESE = re.compile(r"[\u4e00-\u9fff]")
LONG_NUMBER = re.compile(r"\d{4,}")


@pytest.fixture(scope="module")
def session():  # type: ignore[no-untyped-def]
    return onnx_session(newest_model_directory(MODELS_ROOT) / model_contract.MODEL_FILE_NAME)


def check_reasons(values: np.ndarray, contributions: np.ndarray, log_odds: float) -> None:
    reasons = principal_reasons(values.tolist(), contributions.tolist())
    named = {reason.feature for reason in reasons}
    adverse = sorted(
        (
            (float(contribution), name)
            for name, contribution in zip(FEATURE_NAMES, contributions, strict=True)
            if contribution > REASON_CONTRIBUTION_MIN
        ),
        reverse=True,
    )
    # Largest first, each at least as large as the contribution of its feature.
    shown = [reason.log_odds_contribution for reason in reasons]
    assert shown == sorted(shown, reverse=True)
    assert len(reasons) <= REASONS_MAX
    # No adverse feature is left out while a smaller one is named (a feature whose sentence is
    # the same as a named reason's counts in that reason).
    sentences = {reason.message_en for reason in reasons}
    if reasons:
        smallest = min(shown)
        for contribution, name in adverse:
            if contribution > smallest:
                alone = principal_reasons(
                    values.tolist(),
                    [
                        c if n == name else 0.0
                        for n, c in zip(FEATURE_NAMES, contributions, strict=True)
                    ],
                )
                assert name in named or alone[0].message_en in sentences, name
    # As many reasons as there are (up to four): no adverse feature is dropped for want of a
    # sentence.
    distinct = {
        principal_reasons(
            values.tolist(),
            [c if n == name else 0.0 for n, c in zip(FEATURE_NAMES, contributions, strict=True)],
        )[0].message_en
        for _, name in adverse
    }
    assert len(reasons) == min(REASONS_MAX, len(distinct))
    # Below the reference, there is always something to say.
    unclamped = scoring.unclamped_score(log_odds)
    if scoring.score_from_log_odds(log_odds) < REFERENCE_SCORE:
        assert unclamped < REFERENCE_SCORE and reasons
    for reason in reasons:
        assert reason.log_odds_contribution > 0
        assert reason.message_en and reason.advice_en
        assert CHINESE.search(reason.message_zh) and CHINESE.search(reason.advice_zh)
        assert not LONG_NUMBER.search(reason.message_en + reason.message_zh)


@settings(max_examples=400, deadline=None)
@given(history=histories())
def test_generated_histories_get_the_reasons_that_lowered_their_score(
    session, history: CreditHistory
) -> None:  # type: ignore[no-untyped-def]
    row = np.array([compute_features(history)])
    outputs = run_model(session, row)

    check_reasons(row[0], outputs.contributions[0], float(outputs.log_odds_of_default[0]))


def test_real_histories_get_the_reasons_that_lowered_their_score(session) -> None:  # type: ignore[no-untyped-def]
    rows = dataset.load_labelled_features(TAIWAN_SAMPLE)
    for features in (rows.features, rows.features_without_credit_line):
        outputs = run_model(session, features)
        for values, contributions, log_odds in zip(
            features, outputs.contributions, outputs.log_odds_of_default, strict=True
        ):
            check_reasons(values, contributions, float(log_odds))


def test_the_reference_point_is_the_one_the_model_card_states(session) -> None:  # type: ignore[no-untyped-def]
    directory = newest_model_directory(MODELS_ROOT)
    card = json.loads((directory / model_contract.MODEL_CARD_FILE_NAME).read_text())
    reference = card["reasons"]["reference_point"]
    outputs = run_model(session, np.zeros((1, len(FEATURES))))

    assert reference["score"] == REFERENCE_SCORE
    assert float(outputs.bias[0]) == pytest.approx(reference["log_odds"], abs=1e-5)
    assert scoring.unclamped_score(reference["log_odds"]) >= REFERENCE_SCORE
