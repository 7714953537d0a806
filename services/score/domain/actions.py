# ruff: noqa: RUF001  (Chinese sentences use full-width punctuation, as they should)
"""What would help: a few concrete actions a person can take, each as the change it makes to
the feature window, so the model itself can say what the action would do to this person's score.

An action projects the window forward: the months it describes are added as the newest months
of the window and the oldest ones fall out, as they would once those months have passed. What the
action does not say is held: no new spending, the same credit line, the other months as they
were. The score service scores every applicable action's window with the same model in the same
call as the score, and offers only those that raise the score, each with the score it reaches
(`offered_actions`).

The actions:

* `PAY_LATEST_IN_FULL`: next month, pay the newest statement's balance in full (with any
  Sesame order billed), on time, and charge nothing new. Applies when something is owed.
* `ON_TIME_THREE_MONTHS`: the next three months paid on time, each paying at least the usual
  minimum (`MINIMUM_PAYMENT_SHARE` of the balance) or what was paid in the newest month if more,
  the balance held. Applies when the window holds a late month.
* `BALANCE_BELOW_HALF_LINE`: next month, pay the balance down to just below half the credit
  line, on time, charging nothing new. Applies when the newest balance is above half the line.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.score.domain.features import WINDOW_MONTHS, Window, WindowMonth
from services.score.domain.history import RepaymentStatus

# The share of a balance a card's minimum payment usually asks for.
MINIMUM_PAYMENT_SHARE = 0.1
ON_TIME_MONTHS = 3


@dataclass(frozen=True)
class Action:
    """One thing a person can do, and the window it would leave (None when it does not apply)."""

    code: str
    description_en: str
    description_zh: str
    change: Callable[[Window], Window | None]


@dataclass(frozen=True)
class OfferedAction:
    """An action checked for one person: the score their history would have after it."""

    code: str
    description_en: str
    description_zh: str
    score: int


def _after(window: Window, newest_months: Sequence[WindowMonth]) -> Window:
    """The window once the given months (newest first) have passed."""
    months = (*newest_months, *window.months)[:WINDOW_MONTHS]
    return dataclasses.replace(window, months=tuple(months))


def _on_time(
    balance_minor: int, partner_paid_minor: int, paid_minor: int | None = None
) -> WindowMonth:
    """A month paid on time: the statement's balance and what was paid on it, and what was
    paid in all (Sesame's orders billed with it included) when that is more."""
    status = RepaymentStatus.PAID_IN_FULL if balance_minor <= 0 else RepaymentStatus.REVOLVING
    return WindowMonth(
        status=status,
        months_late=0,
        balance_minor=balance_minor,
        amount_paid_minor=partner_paid_minor,
        billed_minor=balance_minor,
        paid_minor=partner_paid_minor if paid_minor is None else paid_minor,
    )


def _pay_latest_in_full(window: Window) -> Window | None:
    newest = window.months[0]
    owed_minor = max(newest.billed_minor, 0)
    if owed_minor <= 0:
        return None
    return _after(window, [_on_time(0, max(newest.balance_minor, 0), owed_minor)])


def _on_time_three_months(window: Window) -> Window | None:
    if not any(month.months_late for month in window.months):
        return None
    newest = window.months[0]
    balance_minor = newest.balance_minor
    minimum_minor = math.ceil(MINIMUM_PAYMENT_SHARE * max(balance_minor, 0))
    paid_minor = max(newest.amount_paid_minor, minimum_minor)
    return _after(window, [_on_time(balance_minor, paid_minor)] * ON_TIME_MONTHS)


def _balance_below_half_line(window: Window) -> Window | None:
    line_minor = window.credit_line_minor
    newest = window.months[0]
    if line_minor is None or line_minor <= 0 or 2 * newest.balance_minor <= line_minor:
        return None
    target_minor = (line_minor - 1) // 2
    paid_minor = newest.balance_minor - target_minor
    return _after(window, [_on_time(target_minor, paid_minor)])


ACTIONS: tuple[Action, ...] = (
    Action(
        "PAY_LATEST_IN_FULL",
        "Pay your latest statement in full this month, on time.",
        "本月按时全额还清最近一期账单。",
        _pay_latest_in_full,
    ),
    Action(
        "ON_TIME_THREE_MONTHS",
        "Pay on time for the next three months, at least the minimum each month.",
        "接下来三个月每月按时还款，每月至少还最低还款额。",
        _on_time_three_months,
    ),
    Action(
        "BALANCE_BELOW_HALF_LINE",
        "Bring your balance below half of your credit line this month.",
        "本月把欠款降到授信额度的一半以下。",
        _balance_below_half_line,
    ),
)


def applicable_actions(window: Window) -> list[tuple[Action, Window]]:
    """The actions that apply to the window, each with the window it would leave."""
    changed = [(action, action.change(window)) for action in ACTIONS]
    return [(action, after) for action, after in changed if after is not None]


def offered_actions(score: int, checked: Sequence[tuple[Action, int]]) -> tuple[OfferedAction, ...]:
    """The actions whose score beats the person's, largest gain first (ties: catalogue order)."""
    raising = [(action, reached) for action, reached in checked if reached > score]
    raising.sort(key=lambda pair: -pair[1])
    return tuple(
        OfferedAction(action.code, action.description_en, action.description_zh, reached)
        for action, reached in raising
    )
