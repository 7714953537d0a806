"""Monotone where a person can act, for any history: with everything else held, paying more
never lowers the score, a late month never raises it, and a larger credit line never lowers it.
Generated histories go through the one feature function and the newest committed model's ONNX
graph, as the service scores them; each feature must move in its constraint's direction too."""

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
from services.score.domain import model_contract
from services.score.domain.features import FEATURES, compute_features
from services.score.domain.history import CreditHistory, RepaymentStatus, StatementRecord
from tests.support.credit_histories import histories

EXAMPLES = 300


@pytest.fixture(scope="module")
def session():  # type: ignore[no-untyped-def]
    return onnx_session(newest_model_directory(MODELS_ROOT) / model_contract.MODEL_FILE_NAME)


def log_odds(session, history: CreditHistory) -> float:  # type: ignore[no-untyped-def]
    return float(run_model(session, np.array([compute_features(history)])).log_odds_of_default[0])


def no_riskier(before: tuple[float, ...], after: tuple[float, ...]) -> bool:
    """No feature moved towards more risk (NaN stays NaN)."""
    for feature, old, new in zip(FEATURES, before, after, strict=True):
        if np.isnan(old) or np.isnan(new):
            if not (np.isnan(old) and np.isnan(new)):
                return False
        elif feature.monotonicity == 0:
            if old != new:
                return False
        elif feature.monotonicity * (new - old) > 0:
            return False
    return True


def newest_first(history: CreditHistory) -> list[StatementRecord]:
    return sorted(history.statements, key=lambda statement: statement.period, reverse=True)


def assert_no_riskier(session, before: CreditHistory, after: CreditHistory) -> None:  # type: ignore[no-untyped-def]
    assert no_riskier(compute_features(before), compute_features(after))
    assert log_odds(session, after) <= log_odds(session, before)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    history=histories(min_statements=1),
    pick=st.integers(0, 7),
    more_minor=st.integers(1, 300_000_00),
)
def test_paying_more_in_a_month_never_lowers_the_score(
    session, history: CreditHistory, pick: int, more_minor: int
) -> None:  # type: ignore[no-untyped-def]
    statements = newest_first(history)
    chosen = statements[pick % len(statements)]
    paid_more = dataclasses.replace(chosen, amount_paid_minor=chosen.amount_paid_minor + more_minor)
    after = dataclasses.replace(
        history,
        statements=tuple(paid_more if s is chosen else s for s in history.statements),
    )

    assert_no_riskier(session, history, after)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    history=histories(min_statements=1),
    pick=st.integers(0, 7),
    more_minor=st.integers(1, 300_000_00),
)
def test_paying_a_balance_down_never_lowers_the_score(
    session, history: CreditHistory, pick: int, more_minor: int
) -> None:  # type: ignore[no-untyped-def]
    """More paid in a month, and so that much less owed on its statement and every later one
    (what paying a balance down does)."""
    statements = newest_first(history)
    chosen = statements[pick % len(statements)]

    def paid_down(statement: StatementRecord) -> StatementRecord:
        if statement.period < chosen.period:
            return statement
        extra = more_minor if statement is chosen else 0
        return dataclasses.replace(
            statement,
            balance_minor=statement.balance_minor - more_minor,
            amount_paid_minor=statement.amount_paid_minor + extra,
        )

    after = dataclasses.replace(history, statements=tuple(paid_down(s) for s in history.statements))

    assert_no_riskier(session, history, after)


@settings(max_examples=EXAMPLES, deadline=None)
@given(history=histories(min_statements=1), pick=st.integers(0, 7), later=st.integers(1, 8))
def test_a_late_month_never_raises_the_score(
    session, history: CreditHistory, pick: int, later: int
) -> None:  # type: ignore[no-untyped-def]
    statements = newest_first(history)
    chosen = statements[pick % len(statements)]
    made_late = dataclasses.replace(
        chosen,
        repayment_status=RepaymentStatus.LATE,
        months_late=min(chosen.months_late + later, 99),
    )
    after = dataclasses.replace(
        history,
        statements=tuple(made_late if s is chosen else s for s in history.statements),
    )

    assert_no_riskier(session, after, history)


@settings(max_examples=EXAMPLES, deadline=None)
@given(history=histories(with_credit_line=True), more_minor=st.integers(1, 2_000_000_00))
def test_a_larger_credit_line_never_lowers_the_score(
    session, history: CreditHistory, more_minor: int
) -> None:  # type: ignore[no-untyped-def]
    assert history.credit_line_minor is not None
    after = dataclasses.replace(history, credit_line_minor=history.credit_line_minor + more_minor)

    assert_no_riskier(session, history, after)


def test_every_feature_is_constrained() -> None:
    assert all(feature.monotonicity != 0 for feature in FEATURES)
