"""What would help is proven by the model: every action a score offers raises that person's
score, to exactly the score the model gives the history as the action leaves it; an action that
applies and would not raise the score is never offered. Generated histories through the scoring
use case with the committed model."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from services.common.history_cache import HistoryCache
from services.score.adapters.model_files import MODELS_ROOT
from services.score.adapters.onnx_model import OnnxModelLoader
from services.score.domain.actions import ACTIONS, applicable_actions
from services.score.domain.consent import ConsentState
from services.score.domain.features import feature_window, features_of_window
from services.score.domain.history import CreditHistory, RepaymentStatus, StatementRecord
from services.score.service.model_registry import ModelRegistry
from services.score.service.ports import LedgerHistory
from services.score.service.score_service import CachedUser, ScoreService, scores_from_log_odds
from tests.support.credit_histories import AS_OF_TIMES, histories


class OneHistory:
    """A ledger that holds one history, whoever asks."""

    history: CreditHistory

    def get_credit_history(self, user_id: str, as_of: datetime | None) -> LedgerHistory:
        return LedgerHistory(self.history, as_of, consent=ConsentState.GRANTED)


@pytest.fixture(scope="module")
def models() -> ModelRegistry:
    registry = ModelRegistry(OnnxModelLoader(MODELS_ROOT))
    registry.load_initial()
    return registry


def score_of(models: ModelRegistry, history_window) -> int:  # type: ignore[no-untyped-def]
    outputs = models.current().score_rows(np.array([features_of_window(history_window)]))
    return int(scores_from_log_odds(outputs.log_odds_of_default)[0])


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=histories(min_statements=3))
def test_every_action_offered_raises_the_score_to_what_the_model_says(
    models: ModelRegistry, history: CreditHistory
) -> None:
    ledger = OneHistory()
    ledger.history = history
    service = ScoreService(ledger, HistoryCache[CachedUser](), models)
    try:
        result = service.get_score("someone", history.as_of)
    finally:
        service.close()
    if result.thin_file_reason is not None:
        assert result.actions == ()
        return
    window = feature_window(history)
    checked = {action.code: score_of(models, after) for action, after in applicable_actions(window)}
    offered = {action.code: action.score for action in result.actions}

    assert offered == {code: reached for code, reached in checked.items() if reached > result.score}
    assert [action.score for action in result.actions] == sorted(offered.values(), reverse=True)
    assert all(action.description_en and action.description_zh for action in result.actions)


def test_a_late_revolving_history_is_offered_what_helps_it() -> None:
    """A user late on the newest statement with a balance near the line is told, with the score
    each would reach, which of the three actions would raise the score."""
    statements = tuple(
        StatementRecord(
            2005,
            month,
            balance_minor=90_000_00,
            amount_paid_minor=3_000_00,
            repayment_status=RepaymentStatus.LATE if month == 9 else RepaymentStatus.REVOLVING,
            months_late=2 if month == 9 else 0,
        )
        for month in range(9, 3, -1)
    )
    history = CreditHistory(100_000_00, statements, as_of=AS_OF_TIMES[-3])
    window = feature_window(history)

    assert {action.code for action, _ in applicable_actions(window)} == {
        action.code for action in ACTIONS
    }
