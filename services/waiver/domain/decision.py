# ruff: noqa: RUF001  (Chinese sentences use full-width punctuation, as they should)
"""The decision on a deposit: a pure function of the probability of default, the risk amount,
the scenario's policy and the user's remaining waiver capacity.

    waived = the largest amount within the risk amount, the policy's cap, the remaining capacity
             and the expected-loss budget (probability of default x waived <= budget),
             in whole units of the currency (the whole risk amount when it fits)

FULL when all of the risk amount is waived, PARTIAL when part is (the user pays the rest as a
deposit), DENIED when nothing is, or when the score is below the policy's minimum. A thin file
(no score) gets the policy's starter waiver at most, within the capacity; no score at all (the
score service did not answer) is never a waiver.

A partial or denied decision carries at most four reasons a person can read, in English and in
Chinese, each with what would help: what limited the waiver, and the score's own reasons when
the user's credit is what limited it, with, after the first, the action the score's model says
would raise this user's score most (proven on the user's own history). Never the score or the
probability: merchants relay these.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from services.waiver.domain.policy import ScenarioPolicy

REASONS_MAX = 4


class WaiverOutcome(enum.Enum):
    FULL = "full"
    PARTIAL = "partial"
    DENIED = "denied"


class Limit(enum.Enum):
    """What set the waived amount."""

    RISK_AMOUNT = "risk_amount"  # all of it: a full waiver
    POLICY_CAP = "policy_cap"
    CAPACITY = "capacity"
    LOSS_BUDGET = "loss_budget"
    MINIMUM_SCORE = "minimum_score"
    THIN_FILE = "thin_file"
    SCORING_UNAVAILABLE = "scoring_unavailable"


@dataclass(frozen=True)
class UserReason:
    """One reason a person can read, with what would help, in both languages."""

    code: str
    message_en: str
    message_zh: str
    advice_en: str = ""
    advice_zh: str = ""

    def message(self, language_code: str) -> str:
        return self.message_zh if language_code == "zh" else self.message_en

    def advice(self, language_code: str) -> str:
        return self.advice_zh if language_code == "zh" else self.advice_en


@dataclass(frozen=True)
class ProvenAction:
    """Something the user can do that the score's model says would raise their score (the
    score it would reach stays inside Sesame)."""

    code: str
    description_en: str
    description_zh: str


@dataclass(frozen=True)
class ScoreView:
    """What the waiver knows of a user's credit: kept inside Sesame, never given to merchants.

    `score` and `probability_of_default` are None for a thin file. `actions`: what would raise
    the score, most first, each checked by the score's model on the user's own history."""

    score: int | None
    probability_of_default: float | None
    reasons: tuple[UserReason, ...]
    model_version: str
    actions: tuple[ProvenAction, ...] = ()

    @property
    def thin_file(self) -> bool:
        return self.score is None


@dataclass(frozen=True)
class Decision:
    outcome: WaiverOutcome
    waived_minor: int
    deposit_minor: int
    limited_by: Limit
    reasons: tuple[UserReason, ...]


def decide(
    *,
    risk_minor: int,
    policy: ScenarioPolicy,
    score: ScoreView | None,
    capacity_minor: int,
    remaining_capacity_minor: int,
    currency_code: str,
    unit_minor: int,
) -> Decision:
    """The decision for one order; `score` None means no score could be had. `capacity_minor` is
    the user's waiver capacity, `remaining_capacity_minor` what other open holds leave of it."""
    assert risk_minor > 0 and unit_minor > 0
    remaining_capacity_minor = max(0, min(capacity_minor, remaining_capacity_minor))
    in_use = remaining_capacity_minor < capacity_minor
    if score is None:
        return _denied(risk_minor, Limit.SCORING_UNAVAILABLE, (_SCORING_UNAVAILABLE,))
    if score.thin_file:
        limits = {
            Limit.THIN_FILE: policy.thin_file_waiver_minor,
            Limit.CAPACITY: remaining_capacity_minor,
        }
        context_reasons: tuple[UserReason, ...] = (_THIN_FILE,)
    else:
        assert score.score is not None and score.probability_of_default is not None
        if score.score < policy.minimum_score:
            return _denied(risk_minor, Limit.MINIMUM_SCORE, _credit_reasons(score))
        limits = {
            Limit.POLICY_CAP: policy.max_waiver_minor,
            Limit.CAPACITY: remaining_capacity_minor,
            Limit.LOSS_BUDGET: _budget_limit_minor(
                policy.expected_loss_budget_minor, score.probability_of_default
            ),
        }
        context_reasons = _credit_reasons(score)
    binding = min(limits, key=lambda limit: limits[limit])
    if limits[binding] >= risk_minor:
        return Decision(WaiverOutcome.FULL, risk_minor, 0, Limit.RISK_AMOUNT, ())
    waived_minor = limits[binding] // unit_minor * unit_minor
    reasons = _limit_reasons(binding, policy, in_use, currency_code, unit_minor)
    reasons = _first_distinct((*reasons, *context_reasons))
    if waived_minor <= 0:
        return _denied(risk_minor, binding, reasons)
    return Decision(
        WaiverOutcome.PARTIAL, waived_minor, risk_minor - waived_minor, binding, reasons
    )


# Beyond any amount of money (see services.common.money.MAX_AMOUNT_MINOR): no limit at all.
_UNLIMITED_MINOR = 10**18


def _budget_limit_minor(budget_minor: int, probability_of_default: float) -> int:
    """The largest amount whose expected loss stays within the budget."""
    limit = budget_minor / probability_of_default if probability_of_default > 0 else math.inf
    # A probability of default so small that no amount reaches the budget: the other limits
    # decide.
    return _UNLIMITED_MINOR if limit >= _UNLIMITED_MINOR else math.floor(limit)


def _denied(risk_minor: int, limit: Limit, reasons: tuple[UserReason, ...]) -> Decision:
    return Decision(WaiverOutcome.DENIED, 0, risk_minor, limit, _first_distinct(reasons))


def _first_distinct(reasons: tuple[UserReason, ...]) -> tuple[UserReason, ...]:
    seen: set[str] = set()
    kept = []
    for reason in reasons:
        if reason.code not in seen:
            seen.add(reason.code)
            kept.append(reason)
    return tuple(kept[:REASONS_MAX])


def _credit_reasons(score: ScoreView) -> tuple[UserReason, ...]:
    """The score's reasons, with what would help most right after the first: the action the
    score's model says would raise this user's score most, as proven advice."""
    reasons = score.reasons or (_CREDIT_HISTORY,)
    if not score.actions:
        return reasons
    best = score.actions[0]
    proven = UserReason(
        best.code,
        "Sesame checked this against your own record: it would raise your credit.",
        "芝麻已根据您自己的记录核实：这样做会提升您的信用。",
        best.description_en,
        best.description_zh,
    )
    return (reasons[0], proven, *reasons[1:])


def _limit_reasons(
    limit: Limit,
    policy: ScenarioPolicy,
    capacity_in_use: bool,
    currency_code: str,
    unit_minor: int,
) -> tuple[UserReason, ...]:
    if limit is Limit.POLICY_CAP:
        amount = f"{policy.max_waiver_minor // unit_minor} {currency_code}"
        return (
            UserReason(
                "MERCHANT_LIMIT",
                f"This merchant waives deposits of at most {amount} for this service.",
                f"该商户此项服务最多免除{amount}的押金。",
            ),
        )
    if limit is Limit.CAPACITY:
        return (CAPACITY_IN_USE,) if capacity_in_use else (_CAPACITY_LIMIT,)
    return ()


_SCORING_UNAVAILABLE = UserReason(
    "SCORING_UNAVAILABLE",
    "Your credit could not be checked just now, so the deposit is not waived this time.",
    "暂时无法查询您的信用，本次押金未能免除。",
    "Try again a little later.",
    "请稍后再试。",
)
_THIN_FILE = UserReason(
    "THIN_FILE",
    "Sesame knows too little about your use of credit yet.",
    "芝麻目前对您的信用记录了解还不够。",
    "Return items and pay small orders on time: every kept promise builds your record.",
    "按时归还物品、按时支付小额订单：每一次守约都会积累您的信用记录。",
)
_CREDIT_HISTORY = UserReason(
    "CREDIT_HISTORY",
    "Your credit history does not yet support waiving this whole deposit.",
    "您目前的信用记录还不足以免除全部押金。",
    "Pay your statements in full and on time, and keep your promises to merchants.",
    "按时全额还款，并信守对商户的承诺。",
)
_CAPACITY_LIMIT = UserReason(
    "CAPACITY_LIMIT",
    "The deposits Sesame can waive for you at one time are limited by your credit history.",
    "芝麻可同时为您免除的押金额度受您的信用记录限制。",
    "Every order you complete and pay on time raises what can be waived.",
    "每一笔按时完成并付款的订单都会提高可免押额度。",
)
CAPACITY_IN_USE = UserReason(
    "CAPACITY_IN_USE",
    "Deposits already waived for your other open orders use your waiver limit.",
    "您其他进行中订单已免除的押金占用了免押额度。",
    "Completing or returning your other orders frees it.",
    "完成或归还其他订单后即可释放额度。",
)
