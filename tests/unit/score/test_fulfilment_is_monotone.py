"""Monotone in the right direction, for any history: adding an obligation paid on time never
lowers the score; adding one paid late, left unpaid past its due time or defaulted never raises
it. Generated histories go through the one feature function and the newest committed model's
ONNX graph, as the service scores them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from services.score.adapters.model_files import (
    MODELS_ROOT,
    newest_model_directory,
    onnx_session,
    run_model,
)
from services.score.domain import model_contract, scoring
from services.score.domain.features import FEATURES, compute_features
from services.score.domain.history import CreditHistory, ObligationOutcome, ObligationRecord
from tests.support.credit_histories import histories, obligations

EXAMPLES = 300


@pytest.fixture(scope="module")
def session():  # type: ignore[no-untyped-def]
    return onnx_session(newest_model_directory(MODELS_ROOT) / model_contract.MODEL_FILE_NAME)


def with_added(history: CreditHistory, added: ObligationRecord) -> CreditHistory:
    return dataclasses.replace(history, obligations=(added, *history.obligations))


def log_odds_and_score(session, history: CreditHistory) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    outputs = run_model(session, np.array([compute_features(history)]))
    log_odds = float(outputs.log_odds_of_default[0])
    return log_odds, scoring.score_from_log_odds(log_odds)


def riskier_or_equal(before: tuple[float, ...], after: tuple[float, ...]) -> bool:
    """Every constrained feature moved towards more risk or stayed; every free one stayed."""
    for feature, old, new in zip(FEATURES, before, after, strict=True):
        if feature.monotonicity == 0:
            if not (old == new or (np.isnan(old) and np.isnan(new))):
                return False
        elif feature.monotonicity * (new - old) < 0:
            return False
    return True


@settings(max_examples=EXAMPLES, deadline=None)
@given(history=histories(), added=obligations(ObligationOutcome.ON_TIME))
def test_an_obligation_paid_on_time_never_lowers_the_score(
    session, history: CreditHistory, added: ObligationRecord
) -> None:  # type: ignore[no-untyped-def]
    after = with_added(history, added)

    assert riskier_or_equal(compute_features(after), compute_features(history))
    (log_odds_before, score_before), (log_odds_after, score_after) = (
        log_odds_and_score(session, history),
        log_odds_and_score(session, after),
    )
    assert log_odds_after <= log_odds_before
    assert score_after >= score_before


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    history=histories(),
    added=obligations(ObligationOutcome.LATE)
    | obligations(ObligationOutcome.DEFAULTED)
    | obligations(ObligationOutcome.OPEN),
)
def test_a_late_unpaid_or_defaulted_obligation_never_raises_the_score(
    session, history: CreditHistory, added: ObligationRecord
) -> None:  # type: ignore[no-untyped-def]
    after = with_added(history, added)

    assert riskier_or_equal(compute_features(history), compute_features(after))
    (log_odds_before, score_before), (log_odds_after, score_after) = (
        log_odds_and_score(session, history),
        log_odds_and_score(session, after),
    )
    assert log_odds_after >= log_odds_before
    assert score_after <= score_before


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    history=histories(),
    added=obligations(ObligationOutcome.ON_TIME),
    extra_days=st.integers(1, 400),
)
def test_paying_late_never_scores_better_than_paying_on_time(
    session, history: CreditHistory, added: ObligationRecord, extra_days: int
) -> None:  # type: ignore[no-untyped-def]
    late = dataclasses.replace(added, outcome=ObligationOutcome.LATE, days_late=extra_days)
    defaulted = dataclasses.replace(added, outcome=ObligationOutcome.DEFAULTED, amount_paid_minor=0)

    scores = [
        log_odds_and_score(session, with_added(history, variant))[0]
        for variant in (added, late, defaulted)
    ]

    assert scores == sorted(scores)
