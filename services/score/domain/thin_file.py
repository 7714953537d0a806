"""When a history is too thin to score: the score is withheld rather than guessed.

The rule. A history is scored when at least `MONTHS_ON_RECORD_MIN` months of the six-month
feature window are on record, each holding a partner statement or a Sesame obligation due that
month and closed by as_of (or still unpaid past its due time, which counts as late); or when the
window holds a broken promise to Sesame (a default, or an obligation unpaid past its due time),
however few months it has. A credit line is not needed: the model learnt to score without one.

Why. The features read six months, and a month with nothing in it reads as a month of no use. With
three months on record the months filled in by that default weigh no more than the facts, which
is the bar partner statements always had; a single kept promise, or two, are not yet a record, and
the thin file's starter waiver is there for the person to build one. A broken promise is scored at
once: it is the strongest fact the model knows, and leaving its author a thin file would hand
them the starter waiver again, so walking off with an item would cost nothing.
"""

from __future__ import annotations

import enum

from services.score.domain.features import WINDOW_MONTHS, Window, feature_window
from services.score.domain.history import CreditHistory

# Half the window (see the module docstring for why).
MONTHS_ON_RECORD_MIN = 3
assert MONTHS_ON_RECORD_MIN <= WINDOW_MONTHS


class ThinFileReason(enum.Enum):
    """Why a history is too thin to score; mirrors the contract's ThinFileReason."""

    # The ledger has nothing about the user.
    NO_HISTORY = "no_history"
    # Fewer months of the feature window on record than the model needs, and no broken promise.
    TOO_FEW_MONTHS_ON_RECORD = "too_few_months_on_record"


def thin_file_reason(history: CreditHistory) -> ThinFileReason | None:
    """Why the history is too thin to score, or None when it can be scored."""
    return thin_file_reason_of_window(history, feature_window(history))


def thin_file_reason_of_window(history: CreditHistory, window: Window) -> ThinFileReason | None:
    """`thin_file_reason`, for a caller that holds the history's feature window already."""
    if history.credit_line_minor is None and not history.statements and not history.obligations:
        return ThinFileReason.NO_HISTORY
    if window.months_on_record() >= MONTHS_ON_RECORD_MIN:
        return None
    if any(obligation.fulfilment.promise_broken for obligation in window.obligations):
        return None
    return ThinFileReason.TOO_FEW_MONTHS_ON_RECORD
