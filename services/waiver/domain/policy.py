"""A merchant's scenario policy: who gets a waiver, how much, and how long promises run.

Amounts are integer minor units of the waiver's currency; spans are integer microseconds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from services.common.money import CURRENCY_MINOR_UNITS
from services.common.validation import Violations
from services.waiver.domain import reasons

MICROSECONDS_PER_SECOND = 1_000_000
MICROSECONDS_PER_DAY = 86_400 * MICROSECONDS_PER_SECOND
SCORE_MIN = 350
SCORE_MAX = 950
SCENARIO_ID_LENGTH_MAX = 64
SERVICE_DURATION_MAX_US = 366 * MICROSECONDS_PER_DAY
GRACE_PERIOD_MAX_US = 30 * MICROSECONDS_PER_DAY
BREACH_PERIOD_MAX_US = 90 * MICROSECONDS_PER_DAY
PAYMENT_WINDOW_MAX_US = 90 * MICROSECONDS_PER_DAY


class ThinFileTreatment(enum.Enum):
    """What a scenario does for a user with too little history to score."""

    DENY = "deny"
    # Up to the policy's thin-file amount, so that new users can start a record.
    STARTER_WAIVER = "starter_waiver"


class ScoringUnavailableAction(enum.Enum):
    """What a scenario does when no score can be had in time; never a waiver without a score."""

    # The order is not created; the merchant retries.
    REFUSE_ORDER = "refuse_order"
    # The order is created DENIED: the user pays the whole deposit.
    FULL_DEPOSIT = "full_deposit"


@dataclass(frozen=True)
class OrderTerms:
    """The spans an order runs by, copied from its policy when it is created, so a later change
    of the policy never moves the deadlines of orders already running."""

    grace_period_us: int
    breach_period_us: int
    payment_window_us: int


@dataclass(frozen=True)
class ScenarioPolicy:
    merchant_id: str
    scenario_id: str
    minimum_score: int
    max_waiver_minor: int
    expected_loss_budget_minor: int
    max_service_duration_us: int
    grace_period_us: int
    breach_period_us: int
    payment_window_us: int
    thin_file_treatment: ThinFileTreatment
    # Zero with ThinFileTreatment.DENY.
    thin_file_max_waiver_minor: int
    scoring_unavailable_action: ScoringUnavailableAction
    update_time_us: int = 0

    @property
    def terms(self) -> OrderTerms:
        return OrderTerms(self.grace_period_us, self.breach_period_us, self.payment_window_us)

    @property
    def thin_file_waiver_minor(self) -> int:
        """The most a thin-file user gets waived: zero when the scenario denies them."""
        if self.thin_file_treatment is ThinFileTreatment.DENY:
            return 0
        return self.thin_file_max_waiver_minor


def whole_unit_minor(currency_code: str) -> int:
    """Minor units in one whole unit of the currency (100 fen in a yuan, 1 for yen)."""
    return int(10 ** CURRENCY_MINOR_UNITS[currency_code])


def check_policy(violations: Violations, policy: ScenarioPolicy, currency_code: str) -> None:
    """Adds every problem of the policy's values (field names as in the contract's
    PutScenarioPolicyRequest)."""
    violations.identifier("policy.merchant_id", policy.merchant_id)
    violations.identifier("policy.scenario_id", policy.scenario_id)
    if len(policy.scenario_id) > SCENARIO_ID_LENGTH_MAX:
        violations.add(
            "policy.scenario_id",
            reasons.ID_INVALID,
            f"must be at most {SCENARIO_ID_LENGTH_MAX} characters",
        )
    violations.in_range("policy.minimum_score", policy.minimum_score, SCORE_MIN, SCORE_MAX)
    unit = whole_unit_minor(currency_code)
    if policy.max_waiver_minor % unit:
        violations.add(
            "policy.max_waiver_amount.amount_minor",
            reasons.VALUE_OUT_OF_RANGE,
            "must be a whole number of currency units",
        )
    for field, span_us, low_us, high_us in (
        ("policy.max_service_duration", policy.max_service_duration_us, 1, SERVICE_DURATION_MAX_US),
        ("policy.grace_period", policy.grace_period_us, 0, GRACE_PERIOD_MAX_US),
        ("policy.breach_period", policy.breach_period_us, 1, BREACH_PERIOD_MAX_US),
        ("policy.payment_window", policy.payment_window_us, 1, PAYMENT_WINDOW_MAX_US),
    ):
        if not low_us <= span_us <= high_us:
            lowest = "zero" if low_us == 0 else "positive"
            violations.add(
                field,
                reasons.DURATION_INVALID,
                f"must be {lowest} and at most {high_us // MICROSECONDS_PER_DAY} days",
            )
    if policy.thin_file_treatment is ThinFileTreatment.STARTER_WAIVER:
        if policy.thin_file_max_waiver_minor <= 0:
            violations.add(
                "policy.thin_file_max_waiver_amount",
                reasons.FIELD_REQUIRED,
                "is required and positive with THIN_FILE_TREATMENT_STARTER_WAIVER",
            )
        elif policy.thin_file_max_waiver_minor > policy.max_waiver_minor:
            violations.add(
                "policy.thin_file_max_waiver_amount",
                reasons.POLICY_INVALID,
                "must not be above max_waiver_amount",
            )
    elif policy.thin_file_max_waiver_minor != 0:
        violations.add(
            "policy.thin_file_max_waiver_amount",
            reasons.POLICY_INVALID,
            "must be unset with THIN_FILE_TREATMENT_DENY",
        )
