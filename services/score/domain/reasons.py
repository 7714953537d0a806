# ruff: noqa: RUF001  (Chinese sentences use full-width punctuation, as they should)
"""Reasons: the principal factors that lowered a score, in English and Chinese, with advice.

The model's graph gives every feature's exact contribution to the log-odds of default, measured
from a reference profile: the training histories that score 600 or more, the best band (see
`model_contract`; the model card states the reference, whose log-odds scores 600 or more). A
positive contribution moved the log-odds above the reference's, so it lowered the score below
where that profile's feature would have put it. The reasons are the features with the largest
positive contributions, at most four, most important first; a feature that raised the score is
never named. The contributions add up to the row's log-odds minus the reference's, so every
score below 600 has a positive contribution, and so at least one reason.

Each sentence states the fact behind the feature with the person's own value ("Your most recent
statement was paid 2 months late."), and each advice says what would help, concretely. Every
feature is monotone (see `features`), so a feature's contribution is positive because its value
lies on the riskier side; every feature has a sentence for every value it can take. A value at
the best end of its feature's range (no late payment, a balance paid in full) cannot itself be
improved; when the tree paths still give it a positive share (per-path attributions, see the
model card, spread the effect of the rest of the record over the features on the path) its
sentence says so plainly rather than blame the value.

Numbers in sentences are bounded: counts come from features with small ranges, and a share of
the credit line above 999% is said as "more than 999%".

Sesame's own record. When Sesame's obligations are what made a feature's value riskier (the
caller passes the `SesameRecord` of the history: the obligations the window counted and the
features they made riskier), that feature's reason speaks of the record instead of a statement:
"Your Sesame order due on 3 March 2025 was not paid." It names the most serious of the
obligations behind the feature (a default, then one still unpaid, then late payments), in
English and Chinese, with what would help. Several features made riskier by the same obligations
give one reason, whose contribution is theirs added up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from services.score.domain.features import FEATURE_NAMES, WINDOW_MONTHS
from services.score.domain.fulfilment import CountedObligation, Fulfilment, SesameRecord

REASONS_MAX = 4
# The largest numbers a sentence may carry: counts are months or statements of a six-month
# window (a feature's range keeps them far below), and a share of the credit line above 999% is
# said as "more than 999%".
COUNT_SHOWN_MAX = 999
PERCENT_SHOWN_MAX = 999
# A contribution this small (0.007 score points) is arithmetic, not a reason.
REASON_CONTRIBUTION_MIN = 1e-4


@dataclass(frozen=True)
class Reason:
    """One principal factor that lowered the score; mirrors the contract's Reason."""

    code: str
    feature: str
    log_odds_contribution: float
    message_en: str
    message_zh: str
    advice_en: str
    advice_zh: str


@dataclass(frozen=True)
class ReasonTemplate:
    """How to explain one feature. Messages are format strings over `_placeholders`."""

    code: str
    message_en: str
    message_zh: str
    advice_en: str
    advice_zh: str
    # Whether the feature's value can truthfully be said to have lowered the score.
    applies: Callable[[float], bool]
    # A different English message for a value of exactly 1 (singular) or 0, when needed.
    message_en_singular: str | None = None
    message_en_zero: str | None = None
    message_zh_zero: str | None = None


def _positive(value: float) -> bool:
    return value > 0


def _missing(value: float) -> bool:
    return math.isnan(value)


def _at_least_one(value: float) -> bool:
    return value >= 1


def _below_one(value: float) -> bool:
    return value < 1


def _inside_window(value: float) -> bool:
    return value < WINDOW_MONTHS


_PAY_IN_FULL_EN = "Pay your statements in full for three months."
_PAY_IN_FULL_ZH = "连续三个月全额还清账单。"
_AUTOPAY_EN = "Set up automatic payment of at least the minimum due so no statement is late again."
_AUTOPAY_ZH = "设置自动还款（至少还最低还款额），避免任何一期账单再次逾期。"

# Each feature's templates, tried in order: the first whose `applies` holds explains the value;
# a value none applies to lies at the best end of its feature's range (`BEST_VALUE_FACTS`).
CATALOGUE: Mapping[str, tuple[ReasonTemplate, ...]] = {
    "months_late_latest": (
        ReasonTemplate(
            code="RECENT_LATE_PAYMENT",
            message_en="Your most recent statement was paid {count} months late.",
            message_en_singular="Your most recent statement was paid 1 month late.",
            message_zh="您最近一期账单逾期{count}个月才还款。",
            advice_en="Pay the overdue amount now, then pay every statement by its due date.",
            advice_zh="请尽快还清逾期款项，之后每期账单都在到期日前还款。",
            applies=_at_least_one,
        ),
    ),
    "months_late_previous": (
        ReasonTemplate(
            code="PREVIOUS_LATE_PAYMENT",
            message_en="The statement before your most recent one was paid {count} months late.",
            message_en_singular="The statement before your most recent one was paid 1 month late.",
            message_zh="您倒数第二期账单逾期{count}个月才还款。",
            advice_en=(
                "Pay every statement by its due date; each on-time month pushes this late payment "
                "further into the past."
            ),
            advice_zh="每期账单都按时还款；按时还款的月份越多，这次逾期的影响越小。",
            applies=_at_least_one,
        ),
    ),
    "months_late_worst": (
        ReasonTemplate(
            code="SERIOUS_LATE_PAYMENT",
            message_en=(
                "In the last six months a statement was paid as much as {count} months late."
            ),
            message_en_singular="In the last six months a statement was paid 1 month late.",
            message_zh="最近六个月内，有一期账单逾期长达{count}个月。",
            advice_en=(
                "Pay on time for six months in a row: the delay then falls outside the period your "
                "score looks at."
            ),
            advice_zh="连续六个月按时还款，这次逾期就会移出评分考察的期间。",
            applies=_at_least_one,
        ),
    ),
    "months_late_total": (
        ReasonTemplate(
            code="LATE_PAYMENTS_ADD_UP",
            message_en=(
                "Your late payments in the last six months add up to {count} months of delay."
            ),
            message_en_singular=(
                "Your late payments in the last six months add up to 1 month of delay."
            ),
            message_zh="最近六个月内，您的逾期累计达{count}个月。",
            advice_en=_AUTOPAY_EN,
            advice_zh=_AUTOPAY_ZH,
            applies=_at_least_one,
        ),
    ),
    "late_statement_count": (
        ReasonTemplate(
            code="FREQUENT_LATE_PAYMENTS",
            message_en="Of your last six statements, {count} were paid late.",
            message_en_singular="Of your last six statements, 1 was paid late.",
            message_zh="您最近六期账单中有{count}期逾期还款。",
            advice_en=(
                "Pay every statement on time for the next six months; each on-time month replaces "
                "a late one in the period your score looks at."
            ),
            advice_zh="接下来六个月每期按时还款；每个按时还款的月份都会替换掉评分期间内的一次逾期。",
            applies=_at_least_one,
        ),
    ),
    "months_since_late": (
        ReasonTemplate(
            code="RECENT_DELINQUENCY",
            message_en=(
                "Your latest late payment was {count} months before your most recent statement."
            ),
            message_en_singular=(
                "Your latest late payment was 1 month before your most recent statement."
            ),
            message_en_zero=(
                "Your latest late payment is very recent: it was on your most recent statement."
            ),
            message_zh="您最近一次逾期发生在最近一期账单之前{count}个月。",
            message_zh_zero="您最近一次逾期就发生在最近一期账单。",
            advice_en=(
                "Keep paying on time: the longer it has been since a late payment, the less it "
                "counts."
            ),
            advice_zh="继续按时还款：距离上次逾期越久，它的影响越小。",
            applies=_inside_window,
        ),
    ),
    "credit_line": (
        ReasonTemplate(
            code="NO_CREDIT_LINE",
            message_en=(
                "No lending partner has reported a credit line for you: your score rests on your "
                "payment record alone."
            ),
            message_zh="尚无合作机构为您报送授信额度：您的评分仅依据您的付款记录。",
            advice_en=(
                "Pay every Sesame order on time: each month of kept promises adds to your record."
            ),
            advice_zh="按时支付每一笔芝麻订单：每个守约的月份都会充实您的信用记录。",
            applies=_missing,
        ),
        ReasonTemplate(
            code="SMALL_CREDIT_LINE",
            message_en=(
                "Your credit line is small: in the records the score learnt from, smaller lines "
                "went "
                "with more missed payments."
            ),
            message_zh="您的授信额度较低：在评分所依据的记录中，额度较低的账户逾期更多。",
            advice_en=(
                "Keep paying on time and keep your balance well below the limit; lenders raise the "
                "line for borrowers with a steady record."
            ),
            advice_zh="保持按时还款，让欠款远低于额度；还款记录稳定的用户更容易获得提额。",
            applies=_positive,
        ),
    ),
    "utilisation_latest": (
        ReasonTemplate(
            code="HIGH_UTILISATION",
            message_en="Your most recent balance uses {percent_text}% of your credit line.",
            message_zh="您最近一期账单余额占授信额度的{percent_text_zh}%。",
            advice_en=(
                "Pay your balance down to a small part of your credit line and keep it there for "
                "three months."
            ),
            advice_zh="把欠款降到授信额度的一小部分，并保持三个月。",
            applies=_positive,
        ),
    ),
    "utilisation_mean": (
        ReasonTemplate(
            code="HIGH_AVERAGE_UTILISATION",
            message_en=(
                "Over the last six months your balances used {percent_text}% of your credit line "
                "on average."
            ),
            message_zh="最近六个月，您的账单余额平均占授信额度的{percent_text_zh}%。",
            advice_en=(
                "Pay more than the minimum each month so that your balance comes down over the "
                "next six months."
            ),
            advice_zh="每月还款多于最低还款额，让欠款在接下来六个月里逐步下降。",
            applies=_positive,
        ),
    ),
    "utilisation_max": (
        ReasonTemplate(
            code="BALANCE_NEAR_LIMIT",
            message_en=(
                "In the last six months your balance reached {percent_text}% of your credit line."
            ),
            message_zh="最近六个月，您的账单余额最高达到授信额度的{percent_text_zh}%。",
            advice_en=(
                "Keep your balance well below your credit line every month, even your busiest one."
            ),
            advice_zh="每个月都让欠款远低于授信额度，包括消费最多的月份。",
            applies=_positive,
        ),
    ),
    "payment_ratio_latest": (
        ReasonTemplate(
            code="LOW_RECENT_PAYMENT",
            message_en=(
                "In your most recent month you paid {percent_text}% of the balance you owed."
            ),
            message_zh="最近一个月，您只还了所欠余额的{percent_text_zh}%。",
            advice_en=_PAY_IN_FULL_EN,
            advice_zh=_PAY_IN_FULL_ZH,
            applies=_below_one,
        ),
    ),
    "payment_ratio_previous": (
        ReasonTemplate(
            code="LOW_PREVIOUS_PAYMENT",
            message_en="The month before that, you paid {percent_text}% of the balance you owed.",
            message_zh="再往前一个月，您只还了当时所欠余额的{percent_text_zh}%。",
            advice_en=_PAY_IN_FULL_EN,
            advice_zh=_PAY_IN_FULL_ZH,
            applies=_below_one,
        ),
    ),
    "payment_ratio_overall": (
        ReasonTemplate(
            code="LOW_PAYMENTS_OVERALL",
            message_en=(
                "Over the last six months you paid {percent_text}% of the balances you owed."
            ),
            message_zh="最近六个月，您的还款只占所欠余额的{percent_text_zh}%。",
            advice_en=(
                "Pay more than the minimum every month, and pay statements in full whenever you "
                "can."
            ),
            advice_zh="每月还款多于最低还款额，能全额还清时就全额还清。",
            applies=_below_one,
        ),
    ),
    "payment_ratio_lowest": (
        ReasonTemplate(
            code="LOW_PAYMENT_MONTH",
            message_en=(
                "In one of the last six months you paid only {percent_text}% of the balance you "
                "owed."
            ),
            message_zh="最近六个月中，有一个月您只还了所欠余额的{percent_text_zh}%。",
            advice_en="Pay a steady share of your balance every month, and never skip a month.",
            advice_zh="每个月都稳定地还款，不要有哪个月少还或不还。",
            applies=_below_one,
        ),
    ),
    "months_paid_in_full": (
        ReasonTemplate(
            code="FEW_MONTHS_PAID_IN_FULL",
            message_en=(
                "In only {count} of the last five months did you pay what you owed in full."
            ),
            message_en_zero="In none of the last five months did you pay what you owed in full.",
            message_zh="最近五个月中，您只有{count}个月全额还清了欠款。",
            message_zh_zero="最近五个月中，您没有一个月全额还清欠款。",
            advice_en=_PAY_IN_FULL_EN,
            advice_zh=_PAY_IN_FULL_ZH,
            applies=lambda value: value < 5,
        ),
    ),
    "partner_payment_latest": (
        ReasonTemplate(
            code="SMALL_RECENT_PAYMENT",
            message_en=(
                "Your payment to your lender in your most recent month was smaller than in "
                "histories that score well."
            ),
            message_zh="最近一个月，您向授信机构的还款金额低于评分良好的记录。",
            advice_en="Pay your latest statement in full this month.",
            advice_zh="本月全额还清最近一期账单。",
            applies=lambda value: True,
        ),
    ),
    "partner_payments_mean": (
        ReasonTemplate(
            code="SMALL_PAYMENTS",
            message_en=(
                "Over the last six months your payments to your lender were smaller than in "
                "histories that score well."
            ),
            message_zh="最近六个月，您向授信机构的还款金额低于评分良好的记录。",
            advice_en=(
                "Pay more than the minimum each month, and pay statements in full whenever you can."
            ),
            advice_zh="每月还款多于最低还款额，能全额还清时就全额还清。",
            applies=lambda value: True,
        ),
    ),
    "months_paid_nothing": (
        ReasonTemplate(
            code="MISSED_PAYMENTS",
            message_en=(
                "In {count} of the last six months you paid nothing although you owed a balance."
            ),
            message_zh="最近六个月中，有{count}个月您有欠款却没有还款。",
            advice_en=(
                "Pay at least the minimum every month you owe a balance; automatic payment makes "
                "sure of it."
            ),
            advice_zh="有欠款的月份至少还最低还款额；设置自动还款可以避免遗漏。",
            applies=_at_least_one,
        ),
    ),
}

# What a value at the best end of its feature's range says, for the rare reason that names
# one: the tree paths gave it a positive share because of the rest of the record.
_NONE_LATE_EN = "None of your statements of the last six months was paid late"
_NONE_LATE_ZH = "最近六个月您没有任何一期账单逾期"
_PAID_IN_FULL_EN = "Over the last six months you paid what you owed in full"
_PAID_IN_FULL_ZH = "最近六个月您都全额还清了欠款"
_NO_BALANCE_EN = "In the last six months your balance used none of your credit line"
_NO_BALANCE_ZH = "最近六个月您的账单余额没有占用授信额度"
BEST_VALUE_FACTS: Mapping[str, tuple[str, str]] = {
    "months_late_latest": (
        "Your most recent statement was paid on time",
        "您最近一期账单按时还款",
    ),
    "months_late_previous": (
        "The statement before your most recent one was paid on time",
        "您倒数第二期账单按时还款",
    ),
    "months_late_worst": (_NONE_LATE_EN, _NONE_LATE_ZH),
    "months_late_total": (_NONE_LATE_EN, _NONE_LATE_ZH),
    "late_statement_count": (_NONE_LATE_EN, _NONE_LATE_ZH),
    "months_since_late": (_NONE_LATE_EN, _NONE_LATE_ZH),
    "utilisation_latest": (
        "Your most recent statement shows no balance on your credit line",
        "您最近一期账单没有欠款",
    ),
    "utilisation_mean": (_NO_BALANCE_EN, _NO_BALANCE_ZH),
    "utilisation_max": (_NO_BALANCE_EN, _NO_BALANCE_ZH),
    "payment_ratio_latest": (
        "In your most recent month you paid what you owed in full",
        "最近一个月您全额还清了欠款",
    ),
    "payment_ratio_previous": (
        "The month before that, you paid what you owed in full",
        "再往前一个月您也全额还清了欠款",
    ),
    "payment_ratio_overall": (_PAID_IN_FULL_EN, _PAID_IN_FULL_ZH),
    "payment_ratio_lowest": (_PAID_IN_FULL_EN, _PAID_IN_FULL_ZH),
    "months_paid_in_full": (_PAID_IN_FULL_EN, _PAID_IN_FULL_ZH),
    "months_paid_nothing": (
        "In every month you owed a balance, you paid something",
        "每个有欠款的月份您都有还款",
    ),
}
STRONG_POINT_CODE = "STRONG_POINT_COUNTS_LESS"
_NO_CREDIT_LINE = CATALOGUE["credit_line"][0]


def _strong_point_template(feature: str) -> ReasonTemplate:
    fact_en, fact_zh = BEST_VALUE_FACTS[feature]
    return ReasonTemplate(
        code=STRONG_POINT_CODE,
        message_en=(
            f"{fact_en}, but with the rest of your record it counts for less than in a typical "
            "history scoring 600 or more."
        ),
        message_zh=f"{fact_zh}，但结合您的其他记录，它的加分少于评分600及以上的典型记录。",
        advice_en="Keep it up; the other reasons say what would raise your score most.",
        advice_zh="请继续保持；其他原因说明了什么最能提高您的评分。",
        applies=lambda value: True,
    )


if tuple(CATALOGUE) != FEATURE_NAMES:
    raise AssertionError("the reason catalogue must cover every feature, in feature order")


def principal_reasons(
    feature_values: Sequence[float],
    contributions: Sequence[float],
    record: SesameRecord | None = None,
) -> tuple[Reason, ...]:
    """At most four reasons, the features that raised the log-odds of default most (from the
    reference profile's), largest first; where Sesame's own record made a feature riskier, the
    reason speaks of the record.

    Ties are broken by feature order so the answer is the same on every call.
    """
    if len(feature_values) != len(FEATURE_NAMES) or len(contributions) != len(FEATURE_NAMES):
        raise ValueError(f"expected {len(FEATURE_NAMES)} feature values and contributions")
    reasons: list[Reason] = []
    for index, contribution in enumerate(contributions):
        if contribution <= REASON_CONTRIBUTION_MIN:
            continue
        feature, value = FEATURE_NAMES[index], float(feature_values[index])
        reason = _sesame_reason(feature, float(contribution), record)
        if reason is None:
            reason = _reason(feature, value, float(contribution))
        reasons.append(reason)
    merged = _merged(reasons)
    ranked = sorted(
        range(len(merged)), key=lambda order: (-merged[order].log_odds_contribution, order)
    )
    return tuple(merged[order] for order in ranked[:REASONS_MAX])


def _merged(reasons: Sequence[Reason]) -> list[Reason]:
    """One reason per sentence: several features explained by the same obligations of Sesame's
    record become one reason, named after the first, with their contributions added up."""
    by_sentence: dict[tuple[str, str], Reason] = {}
    for reason in reasons:
        key = (reason.code, reason.message_en)
        kept = by_sentence.get(key)
        by_sentence[key] = (
            reason
            if kept is None
            else replace(
                kept,
                log_odds_contribution=kept.log_odds_contribution + reason.log_odds_contribution,
            )
        )
    return list(by_sentence.values())


def _template(feature: str, value: float) -> ReasonTemplate:
    """The template that explains the value: for a missing value (a feature read against a
    credit line, without one) the missing line's, so that they make one reason; else the first
    of the feature's whose range holds it, else (a value at the best end of the range) the one
    saying so."""
    if math.isnan(value):
        return _NO_CREDIT_LINE
    for template in CATALOGUE[feature]:
        if template.applies(value):
            return template
    return _strong_point_template(feature)


def _reason(feature: str, value: float, contribution: float) -> Reason:
    template = _template(feature, value)
    placeholders = _placeholders(value)
    count = placeholders["count"]
    message_en, message_zh = template.message_en, template.message_zh
    if count == 1 and template.message_en_singular is not None:
        message_en = template.message_en_singular
    if count == 0 and template.message_en_zero is not None:
        message_en = template.message_en_zero
    if count == 0 and template.message_zh_zero is not None:
        message_zh = template.message_zh_zero
    return Reason(
        code=template.code,
        feature=feature,
        log_odds_contribution=contribution,
        message_en=message_en.format_map(placeholders),
        message_zh=message_zh.format_map(placeholders),
        advice_en=template.advice_en,
        advice_zh=template.advice_zh,
    )


def _placeholders(value: float) -> dict[str, object]:
    """What a template may say of a value: bounded whatever the value (a count at most
    `COUNT_SHOWN_MAX`, a percentage at most `PERCENT_SHOWN_MAX` and "more than" beyond it), so
    no sentence ever carries a number longer than three digits."""
    if not math.isfinite(value):
        return {
            "count": None,
            "percent": None,
            "percent_zh": None,
            "percent_text": "",
            "percent_text_zh": "",
        }
    count = round(min(max(value, 0.0), COUNT_SHOWN_MAX))
    share = min(max(value, 0.0), 2 * PERCENT_SHOWN_MAX / 100)
    percent = round(100 * share)
    tiny = percent == 0 and value > 0
    if percent > PERCENT_SHOWN_MAX:
        percent_en, percent_zh = f"more than {PERCENT_SHOWN_MAX}", f"超过{PERCENT_SHOWN_MAX}"
    else:
        percent_en = percent_zh = str(percent)
    return {
        "count": count,
        "percent": percent_en,
        "percent_zh": percent_zh,
        "percent_text": "less than 1" if tiny else percent_en,
        "percent_text_zh": "不到1" if tiny else percent_zh,
    }


# ----------------------------------------------------------------------------------------------
# Sesame's own record

# The months (0 = the newest) whose obligations a feature reads; the others read the whole
# window. A payment ratio of month k pairs the payment of month k with the bill of the month
# before, which holds the obligations due in month k.
_MONTHS_READ: Mapping[str, tuple[int, ...]] = {
    "months_late_latest": (0,),
    "months_late_previous": (1,),
    "payment_ratio_latest": (0,),
    "payment_ratio_previous": (1,),
}
_MONTH_NAMES_EN = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass(frozen=True)
class _RecordTemplate:
    code: str
    one_en: str
    one_zh: str
    many_en: str
    many_zh: str
    advice_en: str
    advice_zh: str


# Most serious first: the reason names the most serious obligations behind the feature.
_RECORD_TEMPLATES: Mapping[Fulfilment, _RecordTemplate] = {
    Fulfilment.DEFAULTED: _RecordTemplate(
        code="SESAME_ORDER_DEFAULTED",
        one_en="Your Sesame order due on {date_en} was not paid.",
        one_zh="您{date_zh}到期的一笔芝麻订单没有付款。",
        many_en="{count} of your Sesame orders in the last six months were not paid.",
        many_zh="最近六个月内，您有{count}笔芝麻订单没有付款。",
        advice_en=(
            "Keep every promise from now on: each order you return and pay on time adds to your "
            "record, and a default stops counting once six whole months have passed after the "
            "month it was due."
        ),
        advice_zh="从现在起按时归还、按时付款：每一次守约都会充实您的信用记录；违约在到期月份之后满六个月即不再计入评分。",
    ),
    Fulfilment.UNPAID: _RecordTemplate(
        code="SESAME_ORDER_UNPAID",
        one_en="Your Sesame order due on {date_en} is still unpaid.",
        one_zh="您{date_zh}到期的一笔芝麻订单仍未付款。",
        many_en="{count} of your Sesame orders are still unpaid after their due dates.",
        many_zh="您有{count}笔芝麻订单已过到期日仍未付款。",
        advice_en=(
            "Pay what is due now: an order counts as one month later for every month it stays "
            "unpaid."
        ),
        advice_zh="请尽快付清：订单每多拖欠一个月，就按多逾期一个月计算。",
    ),
    Fulfilment.LATE: _RecordTemplate(
        code="SESAME_ORDER_PAID_LATE",
        one_en="Your Sesame order due on {date_en} was paid {days_text} late.",
        one_zh="您{date_zh}到期的一笔芝麻订单逾期{days}天才付款。",
        many_en="{count} of your Sesame orders in the last six months were paid late.",
        many_zh="最近六个月内，您有{count}笔芝麻订单逾期付款。",
        advice_en=(
            "Pay Sesame orders by their due date; setting up automatic payment makes sure of it."
        ),
        advice_zh="在到期日前支付芝麻订单；设置自动付款可以避免遗漏。",
    ),
}


def _sesame_reason(feature: str, contribution: float, record: SesameRecord | None) -> Reason | None:
    """The reason for a feature Sesame's record made riskier, or None when it did not."""
    if record is None or feature not in record.worsened_features:
        return None
    months = _MONTHS_READ.get(feature)
    behind = [
        obligation
        for obligation in record.obligations
        if obligation.fulfilment is not Fulfilment.ON_TIME
        and (months is None or obligation.month_index in months)
    ]
    for fulfilment, template in _RECORD_TEMPLATES.items():
        chosen = [obligation for obligation in behind if obligation.fulfilment is fulfilment]
        if chosen:
            return _record_reason(feature, contribution, template, chosen)
    return None


def _record_reason(
    feature: str,
    contribution: float,
    template: _RecordTemplate,
    obligations: Sequence[CountedObligation],
) -> Reason:
    if len(obligations) == 1:
        (obligation,) = obligations
        due = obligation.due_at.astimezone(UTC)
        days = obligation.days_late
        values = {
            "date_en": _date_en(due),
            "date_zh": f"{due.year}年{due.month}月{due.day}日",
            "days": days,
            "days_text": "1 day" if days == 1 else f"{days} days",
        }
        message_en, message_zh = template.one_en, template.one_zh
    else:
        values = {"count": len(obligations)}
        message_en, message_zh = template.many_en, template.many_zh
    return Reason(
        code=template.code,
        feature=feature,
        log_odds_contribution=contribution,
        message_en=message_en.format_map(values),
        message_zh=message_zh.format_map(values),
        advice_en=template.advice_en,
        advice_zh=template.advice_zh,
    )


def _date_en(moment: datetime) -> str:
    return f"{moment.day} {_MONTH_NAMES_EN[moment.month - 1]} {moment.year}"
