"""Builders for the waiver's domain values."""

from __future__ import annotations

import pytest

from services.waiver.domain.decision import ScoreView, UserReason
from services.waiver.domain.order import OrderRequest, RiskFundType
from services.waiver.domain.policy import (
    MICROSECONDS_PER_DAY,
    ScenarioPolicy,
    ScoringUnavailableAction,
    ThinFileTreatment,
)

YUAN = 100
HOUR_US = 3_600_000_000
DAY_US = MICROSECONDS_PER_DAY
NOW_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def make_policy(**changes: object) -> ScenarioPolicy:
    values: dict[str, object] = {
        "merchant_id": "m-1",
        "scenario_id": "bike",
        "minimum_score": 450,
        "max_waiver_minor": 300 * YUAN,
        "expected_loss_budget_minor": 30 * YUAN,
        "max_service_duration_us": DAY_US,
        "grace_period_us": HOUR_US,
        "breach_period_us": 2 * DAY_US,
        "payment_window_us": DAY_US,
        "thin_file_treatment": ThinFileTreatment.STARTER_WAIVER,
        "thin_file_max_waiver_minor": 99 * YUAN,
        "scoring_unavailable_action": ScoringUnavailableAction.REFUSE_ORDER,
    }
    values.update(changes)
    return ScenarioPolicy(**values)  # type: ignore[arg-type]


def make_score(score: int | None = 600, pd: float | None = 0.05, **changes: object) -> ScoreView:
    reasons = (
        UserReason(
            "RECENT_LATE_PAYMENT", "You paid late.", "您曾逾期还款。", "Pay on time.", "按时还款。"
        ),
    )
    values: dict[str, object] = {
        "score": score,
        "probability_of_default": pd,
        "reasons": reasons,
        "model_version": "1.0.0",
    }
    values.update(changes)
    return ScoreView(**values)  # type: ignore[arg-type]


def make_request(**changes: object) -> OrderRequest:
    values: dict[str, object] = {
        "merchant_id": "m-1",
        "out_order_no": "o-1",
        "user_id": "u-1",
        "scenario_id": "bike",
        "risk_fund_type": RiskFundType.DEPOSIT,
        "risk_minor": 99 * YUAN,
        "start_us": NOW_US,
        "end_us": NOW_US + 2 * HOUR_US,
    }
    values.update(changes)
    return OrderRequest(**values)  # type: ignore[arg-type]


@pytest.fixture
def policy() -> ScenarioPolicy:
    return make_policy()
