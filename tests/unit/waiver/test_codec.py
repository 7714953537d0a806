"""The JSON documents the waiver keeps its orders, changes and policies in: they read back as
what was written, look as documented (enums by value, tuples as lists, effects tagged), and a
document that does not fit the types is refused."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from services.waiver.domain.decision import Decision, Limit, UserReason, WaiverOutcome
from services.waiver.domain.lifecycle import (
    AdjustObligation,
    CaptureHold,
    Change,
    CloseObligation,
    ObligationOutcome,
    PlaceHold,
    RecordPayment,
    ReleaseHold,
)
from services.waiver.domain.order import LineItem, Order, OrderState
from services.waiver.service.ports import PendingChange
from services.waiver.storage import codec

from .conftest import HOUR_US, NOW_US, make_policy, make_request

EVERY_EFFECT = (
    PlaceHold(9_900, 10 * HOUR_US, "hold-1"),
    CaptureHold(500, NOW_US + HOUR_US, "order o-1", "capture"),
    ReleaseHold(fulfilled=True),
    RecordPayment(200, NOW_US, "payment-1"),
    AdjustObligation(300, "a discount", "adjust-1"),
    CloseObligation(ObligationOutcome.LATE, 2, NOW_US),
)


def _order() -> Order:
    bell = LineItem("bell", 150, 2, "brass")
    reason = UserReason("THIN_FILE", "Too little history.", "记录太少。", "Use it.", "使用它。")
    return Order(
        request=make_request(post_payments=(bell,)),
        decision=Decision(WaiverOutcome.PARTIAL, 5_000, 4_900, Limit.CAPACITY, (reason,)),
        terms=make_policy().terms,
        state=OrderState.AWAITING_PAYMENT,
        create_time_us=NOW_US,
        update_time_us=NOW_US + 1,
        total_minor=500,
        post_payments=(bell,),
    )


def test_an_order_reads_back_as_written() -> None:
    order = _order()
    assert codec.order_from_json(codec.order_json(order)) == order


def test_a_pending_change_reads_back_with_every_kind_of_effect() -> None:
    pending = PendingChange(Change(_order(), EVERY_EFFECT), "r-1", NOW_US, creating=False)
    assert codec.pending_from_json(codec.pending_json(pending)) == pending


def test_a_policy_reads_back_as_written() -> None:
    policy = replace(make_policy(), update_time_us=NOW_US)
    assert codec.policy_from_json(codec.policy_json(policy)) == policy


def test_a_document_holds_enums_by_value_tuples_as_lists_and_tagged_effects() -> None:
    pending = PendingChange(Change(_order(), EVERY_EFFECT[:1]), "r-1", NOW_US, creating=True)
    document = json.loads(codec.pending_json(pending))
    assert document["change"]["order"]["state"] == "awaiting_payment"
    assert document["change"]["order"]["post_payments"] == [
        {"amount_minor": 150, "count": 2, "description": "brass", "name": "bell"}
    ]
    assert document["change"]["effects"] == [
        {
            "amount_minor": 9_900,
            "expires_in_us": 10 * HOUR_US,
            "kind": "PlaceHold",
            "step": "hold-1",
        }
    ]


@pytest.mark.parametrize(
    "change",
    [
        {"state": "lost"},  # no such state
        {"create_time_us": "yesterday"},  # not an integer
        {"decision": None},  # not optional
    ],
)
def test_a_document_that_does_not_fit_is_refused(change: dict[str, object]) -> None:
    document = {**json.loads(codec.order_json(_order())), **change}
    with pytest.raises((ValueError, TypeError)):
        codec.order_from_json(json.dumps(document))
