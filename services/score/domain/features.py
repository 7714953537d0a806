"""The one feature definition: a credit history in, the model's feature vector out.

Serving computes features from the ledger's GetCreditHistory answer and training computes them
from rows of the Taiwan data set converted into that same answer, both through
`compute_features`, so the model sees in production exactly what it was trained on.

Only behaviour counts: the credit line, the statements' balances, the payments and the repayment
status, and Sesame's own obligations with their outcomes. Nothing about who the person is (sex,
age, education, marriage) is, or can be, a feature: a `CreditHistory` does not carry it.

The window. Features look at the six months that end with the last month ended by the history's
`as_of` (or, without one, with the newest month of a statement or a closed obligation): month 0
is the newest, month 5 the oldest. A month of the window without a statement counts as a month
of no use (no balance, no payment, not late); the thin-file rule (`thin_file.py`) refuses
histories with too few months on record for that to matter much. Anything older is ignored.

Sesame's obligations. Each obligation due in a month of the window becomes that month's
repayment facts on the footing of a partner statement (`fulfilment.py` has the mapping and why):
its lateness, and amounts billed and paid. Where a statement and obligations share a month, the
larger months late stands. Their amounts count in the payment features (what was paid of what
was billed) and never in those that read the partner's credit line (utilisation, new spending,
payments against the line): they were not drawn on it.

A missing credit line. When the history has no credit line (or a zero one, which the ledger
does not accept but a caller might send), the credit line and every feature read against it are
NaN: missing, which the model learnt to handle (training withholds the line from a share of its
rows). Every other value is a finite float64.

Payment ratios. The amount paid during month k pays (part of) the bill of month k+1, as with any
card: `payment_ratio` of month k is paid(k) / billed(k+1), capped at `PAYMENT_RATIO_CAP`; when
nothing was owed (billed(k+1) <= 0) it is 1: nothing was left unpaid.

Monotone where a person can act. With everything else held, paying more never lowers a score,
a late month never raises it and a larger credit line never lowers it: every feature moves one
way under each of these (a payment raises the payment ratios and lowers the balances after it,
a line raised lowers every share of it, a late month raises the lateness features), and every
feature carries a LightGBM monotone constraint in that direction. Features that could move
either way (a balance's six-month change, new purchases or payments as shares of the line) are
not features: what was paid counts as an amount; a credit balance (negative) counts as 0 in the
utilisation.

Ranges. Each feature declares the values a history the ledger can hold gives it (`low`, `high`,
`whole`); a row sent for scoring with any other value is refused.

Amounts are minor units of the reporting currency (the model was trained on New Taiwan dollar
cents; see the model card).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from services.common.money import MAX_AMOUNT_MINOR
from services.score.domain.fulfilment import (
    CountedObligation,
    SesameRecord,
    counted_obligations,
    due_month,
)
from services.score.domain.history import (
    MONTHS_LATE_MAX,
    CreditHistory,
    MonthPeriod,
    RepaymentStatus,
    StatementRecord,
)

WINDOW_MONTHS = 6
# The last window month has no following statement inside the window to pair its payment with.
PAYMENT_PAIRS = WINDOW_MONTHS - 1
PAYMENT_RATIO_CAP = 1.0
# What a feature read against the credit line is when there is no line: missing.
MISSING = math.nan
# The ledger's bound on any amount (minor units): every amount lies strictly between -AMOUNT_MAX
# and AMOUNT_MAX, and a credit line is at least one minor unit, so no share of the line exceeds
# it either.
AMOUNT_MAX = float(MAX_AMOUNT_MINOR)

# +1: a larger value never lowers the probability of default; -1: never raises it; 0: free.
Monotonicity = Literal[-1, 0, 1]


@dataclass(frozen=True)
class WindowMonth:
    """One month of the feature window; a month without a statement is a month of no use.

    `balance_minor` and `amount_paid_minor` are the partner statement's, what the credit line
    features read; `billed_minor` and `paid_minor` add Sesame's obligations to them, what the
    payment features read."""

    status: RepaymentStatus
    months_late: int
    balance_minor: int
    amount_paid_minor: int
    billed_minor: int
    paid_minor: int


NO_STATEMENT = WindowMonth(RepaymentStatus.NO_USE, 0, 0, 0, 0, 0)


@dataclass(frozen=True)
class Window:
    """The six months the features read, newest first, the credit line, and what they rest on:
    the partner statements and the Sesame obligations the window counts."""

    months: tuple[WindowMonth, ...]
    credit_line_minor: int | None
    # The newest month; None when the history gives no month to end the window with.
    end: MonthPeriod | None = None
    # Months (0 = the newest) holding a partner statement.
    statement_months: frozenset[int] = frozenset()
    obligations: tuple[CountedObligation, ...] = ()

    @property
    def statement_count(self) -> int:
        return len(self.statement_months)

    def line_ratio(self, amount_minor: float) -> float:
        """An amount as a share of the credit line; missing without one."""
        if self.credit_line_minor is None or self.credit_line_minor <= 0:
            return MISSING
        return amount_minor / self.credit_line_minor

    def payment_ratio(self, month_index: int) -> float:
        """Share of the previous month's bill paid during month `month_index`."""
        owed_minor = self.months[month_index + 1].billed_minor
        if owed_minor <= 0:
            return 1.0
        paid_minor = self.months[month_index].paid_minor
        return min(paid_minor / owed_minor, PAYMENT_RATIO_CAP)

    def months_on_record(self) -> int:
        """Months of the window holding a partner statement or a counted Sesame obligation."""
        obligation_months = {obligation.month_index for obligation in self.obligations}
        return len(obligation_months | self.statement_months)


@dataclass(frozen=True)
class Feature:
    """One model feature: its name, how it is computed, and the shape the domain demands."""

    name: str
    description: str
    compute: Callable[[Window], float]
    # Enforced in training as a LightGBM monotone constraint.
    monotonicity: Monotonicity
    # The values a history can give the feature (both ends included): what `compute` returns
    # for any history the ledger can hold, and so what a row sent for scoring may carry.
    low: float = -math.inf
    high: float = math.inf
    # Whether every value is a whole number (a count of months or statements).
    whole: bool = False
    # Read against the credit line, so missing (NaN) when there is none.
    reads_credit_line: bool = False

    def range_text(self) -> str:
        """The feature's values in words, for an error naming a value outside them."""
        kind = "a whole number" if self.whole else "a number"
        return f"{kind} from {_bound_text(self.low)} to {_bound_text(self.high)}"

    def holds(self, value: float) -> bool:
        """Whether `value` is one the feature can take (NaN only when it may be missing)."""
        if math.isnan(value):
            return self.reads_credit_line
        return self.low <= value <= self.high and (not self.whole or value == math.floor(value))


def _bound_text(bound: float) -> str:
    return f"{bound:g}" if bound != int(bound) or abs(bound) >= 1e6 else str(int(bound))


def _late(window: Window) -> list[int]:
    return [month.months_late for month in window.months]


def _months_since_late(window: Window) -> float:
    for index, months_late in enumerate(_late(window)):
        if months_late > 0:
            return float(index)
    return float(WINDOW_MONTHS)


def _utilisations(window: Window) -> list[float]:
    # A credit balance (negative) uses none of the line: it counts as 0, so that a lower balance
    # or a larger line never gives a larger share.
    return [window.line_ratio(max(month.balance_minor, 0)) for month in window.months]


def _payment_ratios(window: Window) -> list[float]:
    return [window.payment_ratio(index) for index in range(PAYMENT_PAIRS)]


def _overall_payment_ratio(window: Window) -> float:
    owed_minor = sum(max(month.billed_minor, 0) for month in window.months[1:])
    if owed_minor <= 0:
        return 1.0
    paid_minor = sum(month.paid_minor for month in window.months[:PAYMENT_PAIRS])
    return min(paid_minor / owed_minor, PAYMENT_RATIO_CAP)


def _months_paid_nothing(window: Window) -> float:
    return float(
        sum(
            1
            for index in range(PAYMENT_PAIRS)
            if window.months[index + 1].billed_minor > 0 and window.months[index].paid_minor == 0
        )
    )


def _partner_paid(window: Window, months: int) -> float:
    # What was paid on the partner's statements of the newest `months` months, a month's mean
    # (Sesame's obligations are not drawn on the line): more paid never raises the risk, and
    # the line does not change it.
    if window.credit_line_minor is None or window.credit_line_minor <= 0:
        return MISSING
    return sum(month.amount_paid_minor for month in window.months[:months]) / months


def _partner_payments_mean(window: Window) -> float:
    return _partner_paid(window, months=WINDOW_MONTHS)


def _credit_line(window: Window) -> float:
    line_minor = window.credit_line_minor
    return float(line_minor) if line_minor is not None and line_minor > 0 else MISSING


FEATURES: tuple[Feature, ...] = (
    # Repayment status. Only lateness is a feature, and every lateness feature is constrained so
    # that more months late never improves the score: turning any month of the window late, or
    # later, moves each of them in the riskier direction. Whether a month that was not late was
    # paid in full, revolved or saw no use shows in its balance and payment instead.
    Feature(
        "months_late_latest",
        "Months late on the newest statement (0 when it was not late).",
        lambda window: float(_late(window)[0]),
        1,
        low=0,
        high=MONTHS_LATE_MAX,
        whole=True,
    ),
    Feature(
        "months_late_previous",
        "Months late on the statement before the newest (0 when it was not late).",
        lambda window: float(_late(window)[1]),
        1,
        low=0,
        high=MONTHS_LATE_MAX,
        whole=True,
    ),
    Feature(
        "months_late_worst",
        "The most months late on any statement of the six-month window.",
        lambda window: float(max(_late(window))),
        1,
        low=0,
        high=MONTHS_LATE_MAX,
        whole=True,
    ),
    Feature(
        "months_late_total",
        "Months late added up over the window (two statements two months late count 4).",
        lambda window: float(sum(_late(window))),
        1,
        low=0,
        high=MONTHS_LATE_MAX * WINDOW_MONTHS,
        whole=True,
    ),
    Feature(
        "late_statement_count",
        "How many statements of the window were paid late.",
        lambda window: float(sum(1 for months_late in _late(window) if months_late > 0)),
        1,
        low=0,
        high=WINDOW_MONTHS,
        whole=True,
    ),
    Feature(
        "months_since_late",
        "Statements since the newest late one (0: the newest was late; 6: none in the window).",
        _months_since_late,
        -1,
        low=0,
        high=WINDOW_MONTHS,
        whole=True,
    ),
    # The credit line and how much of it is used. A larger line, granted by a lender who watched
    # the account, never raises the risk; a larger share of it used never lowers the risk. So
    # paying a balance down, or a line raised, never lowers a score. (In the data a line barely
    # used carries risk too; the model is not allowed to learn it, because the only way a person
    # could act on it is to borrow more.)
    Feature(
        "credit_line",
        "The credit line, in minor units (missing when none was reported).",
        _credit_line,
        -1,
        low=1,
        high=AMOUNT_MAX,
        whole=True,
        reads_credit_line=True,
    ),
    Feature(
        "utilisation_latest",
        "The newest statement's balance as a share of the credit line (a credit balance: 0).",
        lambda window: _utilisations(window)[0],
        1,
        low=0,
        high=AMOUNT_MAX,
        reads_credit_line=True,
    ),
    Feature(
        "utilisation_mean",
        "The window's average balance as a share of the credit line.",
        lambda window: sum(_utilisations(window)) / WINDOW_MONTHS,
        1,
        low=0,
        high=AMOUNT_MAX,
        reads_credit_line=True,
    ),
    Feature(
        "utilisation_max",
        "The window's highest balance as a share of the credit line.",
        lambda window: max(_utilisations(window)),
        1,
        low=0,
        high=AMOUNT_MAX,
        reads_credit_line=True,
    ),
    # Payments, of partner statements and Sesame obligations alike.
    Feature(
        "payment_ratio_latest",
        "Share of the previous month's bill paid in the newest month (1 when nothing was owed).",
        lambda window: _payment_ratios(window)[0],
        -1,
        low=0,
        high=PAYMENT_RATIO_CAP,
    ),
    Feature(
        "payment_ratio_previous",
        "Share of the bill before that paid in the month before the newest.",
        lambda window: _payment_ratios(window)[1],
        -1,
        low=0,
        high=PAYMENT_RATIO_CAP,
    ),
    Feature(
        "payment_ratio_overall",
        "Everything paid over the window as a share of everything owed.",
        _overall_payment_ratio,
        -1,
        low=0,
        high=PAYMENT_RATIO_CAP,
    ),
    Feature(
        "payment_ratio_lowest",
        "The smallest monthly payment ratio of the window.",
        lambda window: min(_payment_ratios(window)),
        -1,
        low=0,
        high=PAYMENT_RATIO_CAP,
    ),
    Feature(
        "months_paid_in_full",
        "Months of the window whose payment covered the previous month's bill (or nothing was "
        "owed): payment ratios of 1.",
        lambda window: float(sum(1 for ratio in _payment_ratios(window) if ratio >= 1.0)),
        -1,
        low=0,
        high=PAYMENT_PAIRS,
        whole=True,
    ),
    Feature(
        "partner_payment_latest",
        "What was paid to the lending partner in the newest month, in minor units (missing "
        "without a credit line).",
        lambda window: _partner_paid(window, months=1),
        -1,
        low=0,
        high=AMOUNT_MAX,
        reads_credit_line=True,
    ),
    Feature(
        "partner_payments_mean",
        "The window's average monthly payment to the lending partner, in minor units (missing "
        "without a credit line).",
        _partner_payments_mean,
        -1,
        low=0,
        high=AMOUNT_MAX,
        reads_credit_line=True,
    ),
    Feature(
        "months_paid_nothing",
        "Months of the window in which nothing was paid although a bill was owed.",
        _months_paid_nothing,
        1,
        low=0,
        high=PAYMENT_PAIRS,
        whole=True,
    ),
)

FEATURE_NAMES: tuple[str, ...] = tuple(feature.name for feature in FEATURES)
FEATURE_COUNT = len(FEATURES)
MONOTONE_CONSTRAINTS: tuple[Monotonicity, ...] = tuple(feature.monotonicity for feature in FEATURES)


FEATURES_READING_CREDIT_LINE: tuple[str, ...] = tuple(
    feature.name for feature in FEATURES if feature.reads_credit_line
)


def feature_window(history: CreditHistory) -> Window:
    """The six months the features read, newest first (see the module's note on the window),
    with Sesame's obligations counted into the months they were due."""
    return _window(history, _window_end(history), count_obligations=True)


def feature_window_statement_count(history: CreditHistory) -> int:
    """How many of the history's statements fall inside the feature window."""
    return feature_window(history).statement_count


def compute_features(history: CreditHistory) -> tuple[float, ...]:
    """The model's feature vector for a history, in `FEATURE_NAMES` order."""
    return features_of_window(feature_window(history))


def features_of_window(window: Window) -> tuple[float, ...]:
    """The feature vector of a window `feature_window` built, for a caller that holds one."""
    values = tuple(float(feature.compute(window)) for feature in FEATURES)
    assert len(values) == FEATURE_COUNT
    return values


def feature_dict(values: Sequence[float]) -> dict[str, float]:
    """A feature vector keyed by feature name, for people and tests."""
    if len(values) != FEATURE_COUNT:
        raise ValueError(f"expected {FEATURE_COUNT} feature values, got {len(values)}")
    return dict(zip(FEATURE_NAMES, values, strict=True))


def sesame_record(history: CreditHistory, window: Window | None = None) -> SesameRecord:
    """Sesame's own record in the history's window (`window`, when the caller holds it), for the
    reasons: the obligations the window counts, and the features whose value they made riskier,
    those whose value lies on the riskier side (by the feature's monotone direction) of the
    value the same window gives without them. Only constrained features read obligations, so
    only they can be named."""
    if window is None:
        window = feature_window(history)
    if not window.obligations:
        return SesameRecord(obligations=(), worsened_features=frozenset())
    partner_only = _window(history, window.end, count_obligations=False)
    worsened = frozenset(
        feature.name
        for feature, value, partner_value in zip(
            FEATURES, features_of_window(window), features_of_window(partner_only), strict=True
        )
        if feature.monotonicity * (value - partner_value) > 0
    )
    return SesameRecord(obligations=window.obligations, worsened_features=worsened)


def _window(
    history: CreditHistory, newest: MonthPeriod | None, *, count_obligations: bool
) -> Window:
    months = [NO_STATEMENT] * WINDOW_MONTHS
    if newest is None:
        return Window(months=tuple(months), credit_line_minor=history.credit_line_minor)
    statements: dict[int, StatementRecord] = {}
    for statement in history.statements:
        offset = statement.period.months_before(newest)
        if 0 <= offset < WINDOW_MONTHS:
            statements[offset] = statement
    obligations = (
        counted_obligations(history.obligations, newest, WINDOW_MONTHS, history.as_of)
        if count_obligations
        else ()
    )
    return Window(
        months=tuple(
            _window_month(statements.get(index), obligations, index)
            for index in range(WINDOW_MONTHS)
        ),
        credit_line_minor=history.credit_line_minor,
        end=newest,
        statement_months=frozenset(statements),
        obligations=obligations,
    )


def _window_end(history: CreditHistory) -> MonthPeriod | None:
    if history.as_of is not None:
        return MonthPeriod.last_ended_by(history.as_of)
    due_months = [
        due_month(obligation.due_at)
        for obligation in history.obligations
        if obligation.closed and obligation.due_at is not None
    ]
    statement_months = [statement.period for statement in history.statements]
    return max((*statement_months, *due_months), default=None)


def _window_month(
    statement: StatementRecord | None, obligations: Sequence[CountedObligation], index: int
) -> WindowMonth:
    """A month's facts: its statement's, with the obligations due in it (and the bills of those
    due the month after) added on the footing `fulfilment` describes."""
    month = NO_STATEMENT if statement is None else _statement_month(statement)
    due = [obligation for obligation in obligations if obligation.month_index == index]
    billed_minor = sum(
        obligation.billed_minor for obligation in obligations if obligation.month_index == index - 1
    )
    if not due and not billed_minor:
        return month
    months_late = max((month.months_late, *(obligation.months_late for obligation in due)))
    if months_late > month.months_late:
        status = RepaymentStatus.LATE
    elif statement is None and due:
        status = RepaymentStatus.PAID_IN_FULL  # every obligation due in it was paid on time
    else:
        status = month.status
    return dataclasses.replace(
        month,
        status=status,
        months_late=months_late,
        billed_minor=month.billed_minor + billed_minor,
        paid_minor=month.paid_minor + sum(obligation.paid_on_time_minor for obligation in due),
    )


def _statement_month(statement: StatementRecord) -> WindowMonth:
    return WindowMonth(
        status=statement.repayment_status,
        months_late=statement.months_late,
        balance_minor=statement.balance_minor,
        amount_paid_minor=statement.amount_paid_minor,
        billed_minor=statement.balance_minor,
        paid_minor=statement.amount_paid_minor,
    )
