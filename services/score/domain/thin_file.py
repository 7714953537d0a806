"""When a history is too thin to score: the score is withheld rather than guessed.

The model learned from six months of statements with a credit line. A history without a credit
line, or with fewer than `STATEMENTS_MIN` statements in the feature window, would be scored
mostly from the window's defaults for missing months ("no use"), so Sesame says "thin file"
instead and the caller decides what to do (a merchant, for example, asks for the deposit).
"""

from __future__ import annotations

import enum

from services.score.domain.features import WINDOW_MONTHS, feature_window_statement_count
from services.score.domain.history import CreditHistory

# Half the window: with three real months the other three defaults weigh no more than the facts.
STATEMENTS_MIN = 3
assert STATEMENTS_MIN <= WINDOW_MONTHS


class ThinFileReason(enum.Enum):
    """Why a history is too thin to score; mirrors the contract's ThinFileReason."""

    # The ledger has nothing about the user.
    NO_HISTORY = "no_history"
    # No credit line and no closed obligations.
    NO_CREDIT_LINE = "no_credit_line"
    # Fewer statements in the feature window than the model needs.
    TOO_FEW_STATEMENTS = "too_few_statements"


def thin_file_reason(history: CreditHistory) -> ThinFileReason | None:
    """Why the history is too thin to score, or None when it can be scored."""
    if history.credit_line_minor is None and not history.statements and not history.obligations:
        return ThinFileReason.NO_HISTORY
    has_credit_line = history.credit_line_minor is not None and history.credit_line_minor > 0
    if not has_credit_line and history.closed_obligation_count == 0:
        return ThinFileReason.NO_CREDIT_LINE
    if feature_window_statement_count(history) < STATEMENTS_MIN:
        return ThinFileReason.TOO_FEW_STATEMENTS
    return None
