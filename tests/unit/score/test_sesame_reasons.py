"""Reasons speak of Sesame's own record when it is what lowered the score: the obligation, its
due date, what happened, in English and Chinese, with what would help; and of a partner's
statement when the statement is what did."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.score.domain.features import (
    FEATURE_NAMES,
    compute_features,
    sesame_record,
)
from services.score.domain.history import (
    CreditHistory,
    ObligationOutcome,
    ObligationRecord,
    RepaymentStatus,
    StatementRecord,
)
from services.score.domain.reasons import Reason, principal_reasons

AS_OF = datetime(2025, 5, 1, tzinfo=UTC)


def obligation(
    month: int, outcome: ObligationOutcome = ObligationOutcome.ON_TIME, days_late: int = 0
) -> ObligationRecord:
    paid = 300 if outcome in (ObligationOutcome.ON_TIME, ObligationOutcome.LATE) else 0
    return ObligationRecord(300, paid, datetime(2025, month, 3, 9, tzinfo=UTC), outcome, days_late)


def reasons_for(history: CreditHistory, pushed: float = 0.2) -> tuple[Reason, ...]:
    """Reasons as if every feature had raised the risk by `pushed`."""
    return principal_reasons(
        compute_features(history), [pushed] * len(FEATURE_NAMES), sesame_record(history)
    )


def sesame_only(*obligations: ObligationRecord) -> CreditHistory:
    return CreditHistory(None, (), obligations, AS_OF)


def test_a_default_is_named_with_its_due_date_in_both_languages() -> None:
    history = sesame_only(
        obligation(4, ObligationOutcome.DEFAULTED), obligation(3), obligation(2), obligation(1)
    )

    first = reasons_for(history)[0]

    assert first.code == "SESAME_ORDER_DEFAULTED"
    assert first.message_en == "Your Sesame order due on 3 April 2025 was not paid."
    assert first.message_zh == "您2025年4月3日到期的一笔芝麻订单没有付款。"
    assert first.advice_en.startswith("Keep every promise from now on")
    assert first.advice_zh.endswith("。")


def test_the_features_one_default_made_riskier_give_one_reason_with_their_contributions() -> None:
    history = sesame_only(
        obligation(4, ObligationOutcome.DEFAULTED), obligation(3), obligation(2), obligation(1)
    )
    worsened = sesame_record(history).worsened_features

    reasons = reasons_for(history)

    sesame = [reason for reason in reasons if reason.code.startswith("SESAME_")]
    assert len(sesame) == 1
    assert sesame[0].log_odds_contribution == pytest.approx(0.2 * len(worsened))
    assert len(worsened) > 1


def test_late_payments_are_counted_or_dated() -> None:
    one = sesame_only(obligation(4, ObligationOutcome.LATE, 1), obligation(3), obligation(2))
    two = sesame_only(
        obligation(4, ObligationOutcome.LATE, 5),
        obligation(3, ObligationOutcome.LATE, 40),
        obligation(2),
    )

    (one_reason,) = [reason for reason in reasons_for(one) if reason.code.startswith("SESAME_")]
    two_reasons = {reason.message_en for reason in reasons_for(two)}

    assert one_reason.message_en == "Your Sesame order due on 3 April 2025 was paid 1 day late."
    assert one_reason.message_zh == "您2025年4月3日到期的一笔芝麻订单逾期1天才付款。"
    assert "2 of your Sesame orders in the last six months were paid late." in two_reasons
    # The newest month's own reason names the newest late payment alone.
    assert "Your Sesame order due on 3 April 2025 was paid 5 days late." in two_reasons


def test_an_obligation_still_unpaid_is_said_to_be_unpaid() -> None:
    history = sesame_only(obligation(4, ObligationOutcome.OPEN), obligation(3), obligation(2))

    codes = {reason.code for reason in reasons_for(history)}

    assert "SESAME_ORDER_UNPAID" in codes


def test_a_default_outweighs_a_late_payment_in_the_same_feature() -> None:
    history = sesame_only(
        obligation(4, ObligationOutcome.LATE, 3),
        obligation(4, ObligationOutcome.DEFAULTED),
        obligation(3),
    )

    assert reasons_for(history)[0].code == "SESAME_ORDER_DEFAULTED"


def test_a_partner_statement_worse_than_the_obligation_keeps_its_own_reason() -> None:
    statements = tuple(
        StatementRecord(2025, month, 50_000, 0, RepaymentStatus.LATE, 3) for month in (4, 3, 2)
    )
    history = CreditHistory(
        1_000_000, statements, (obligation(4, ObligationOutcome.LATE, 2),), AS_OF
    )

    codes = [reason.code for reason in reasons_for(history)]

    assert codes[0] == "RECENT_LATE_PAYMENT"
    assert not any(code.startswith("SESAME_") for code in codes)


def test_kept_promises_are_never_a_reason() -> None:
    history = sesame_only(obligation(4), obligation(3), obligation(2))

    assert not any(reason.code.startswith("SESAME_") for reason in reasons_for(history))


def test_without_the_record_the_same_values_get_the_statement_sentences() -> None:
    history = sesame_only(obligation(4, ObligationOutcome.DEFAULTED), obligation(3), obligation(2))

    reasons = principal_reasons(compute_features(history), [0.2] * len(FEATURE_NAMES))

    assert "RECENT_LATE_PAYMENT" in [reason.code for reason in reasons]
