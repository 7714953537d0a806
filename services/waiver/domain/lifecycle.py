"""The order's life: one function, `transition`, that every change of an order goes through.

(the README's "Order lifecycle" has the same as a table)

    (new)        create, something waived ............. CREATED or DOING   PlaceHold
    (new)        create, nothing waived ............... DENIED
    CREATED      the window starts .................... DOING
    CREATED      30 days after creation, not started .. EXPIRED            ReleaseHold
    CREATED      cancel ............................... REVOKED            ReleaseHold
    DOING        cancel ............................... REVOKED            ReleaseHold
    DOING        complete, a charge on credit ......... AWAITING_PAYMENT   CaptureHold (obligation)
    DOING        complete, nothing on credit .......... DONE               ReleaseHold, fulfilled
    DOING        window's end + grace passed .......... OVERDUE
    AWAITING_PAYMENT  payment of part of what is due .. AWAITING_PAYMENT   RecordPayment
    AWAITING_PAYMENT  payment of the rest ............. DONE       RecordPayment, CloseObligation
    AWAITING_PAYMENT  modify (a lower total) .......... AWAITING_PAYMENT, or DONE when nothing is
                                                        left due: AdjustObligation (CloseObligation)
    AWAITING_PAYMENT  due time + grace passed ......... OVERDUE
    OVERDUE, not completed: complete, as from DOING (a late return)
    OVERDUE, not completed: breach period passed ...... BREACHED   CaptureHold (all),
                                                                   CloseObligation defaulted
    OVERDUE, completed: payment, modify, as from AWAITING_PAYMENT (paid late)
    OVERDUE, completed: breach period passed .......... BREACHED   CloseObligation defaulted

The deadline is the window's end before completion and the payment due time after it. The
time-driven changes (start, expiry, overdue, breach) show in every answer as soon as their time
has come (`Order.state_at`); the sweeper writes them with the `Sweep` event. Any other event from
a state the table does not list is refused with FAILED_PRECONDITION, reason ORDER_STATE_INVALID,
naming the state.

`transition` returns the order as it will be and the ledger effects that make it so; the
service layer records both before running the effects (see `service/orders.py`), so a crash
between steps is finished by replaying the same effects under the same request ids.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from services.common.errors import FailedPrecondition
from services.waiver.domain import reasons
from services.waiver.domain.decision import Decision, WaiverOutcome
from services.waiver.domain.order import LineItem, Order, OrderRequest, OrderState
from services.waiver.domain.policy import MICROSECONDS_PER_DAY, ScenarioPolicy

# A hold outlives the latest moment its order can be breached by this much, so a sweeper that
# ran late still finds the hold open.
HOLD_EXPIRY_MARGIN_US = 7 * MICROSECONDS_PER_DAY


# ----------------------------------------------------------------------------------------------
# What the ledger is asked to do. `step` names the step within the order; the ledger request id
# derives from the order and the step, so a retried step lands once.


class ObligationOutcome(enum.Enum):
    ON_TIME = "on_time"
    LATE = "late"
    DEFAULTED = "defaulted"


@dataclass(frozen=True)
class PlaceHold:
    amount_minor: int
    # Relative, as the ledger takes it; fixed when the change is made, so a retry of the step
    # is the same request.
    expires_in_us: int
    step: str


@dataclass(frozen=True)
class CaptureHold:
    amount_minor: int
    obligation_due_us: int
    purpose: str
    step: str


@dataclass(frozen=True)
class ReleaseHold:
    fulfilled: bool
    step: str = "release"


@dataclass(frozen=True)
class RecordPayment:
    amount_minor: int
    paid_at_us: int
    step: str


@dataclass(frozen=True)
class CloseObligation:
    outcome: ObligationOutcome
    days_late: int
    closed_at_us: int
    step: str = "close"


@dataclass(frozen=True)
class AdjustObligation:
    amount_due_minor: int
    reason: str
    step: str


LedgerEffect = (
    PlaceHold | CaptureHold | ReleaseHold | RecordPayment | CloseObligation | AdjustObligation
)


# ----------------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True)
class Complete:
    total_minor: int
    end_time_us: int
    post_payments: tuple[LineItem, ...]
    post_discounts: tuple[LineItem, ...]


@dataclass(frozen=True)
class Cancel:
    reason: str


@dataclass(frozen=True)
class Pay:
    amount_minor: int
    paid_time_us: int


@dataclass(frozen=True)
class Modify:
    total_minor: int
    reason: str


@dataclass(frozen=True)
class Sweep:
    """Time passed: write the time-driven changes whose time has come."""


Event = Complete | Cancel | Pay | Modify | Sweep


@dataclass(frozen=True)
class Change:
    """An order as it will be, and the ledger effects that make it so, in order."""

    order: Order
    effects: tuple[LedgerEffect, ...]


# ----------------------------------------------------------------------------------------------
# Creation


def create(
    request: OrderRequest,
    decision: Decision,
    policy: ScenarioPolicy,
    now_us: int,
    attempt: int = 1,
) -> Change:
    """A new order with its decision: DENIED with nothing held, else CREATED (DOING once the
    window has started) with a hold on the waived amount that outlives any breach."""
    order = Order(
        request=request,
        decision=decision,
        terms=policy.terms,
        state=OrderState.DENIED,
        create_time_us=now_us,
        update_time_us=now_us,
        post_payments=request.post_payments,
        post_discounts=request.post_discounts,
        create_attempt=attempt,
    )
    if decision.outcome is WaiverOutcome.DENIED:
        return Change(order, ())
    started = now_us >= request.start_us
    order = order.evolve(state=OrderState.DOING if started else OrderState.CREATED)
    hold = PlaceHold(
        decision.waived_minor, hold_expiry_us(request, policy, now_us) - now_us, f"hold-{attempt}"
    )
    return Change(order, (hold,))


def hold_expiry_us(request: OrderRequest, policy: ScenarioPolicy, now_us: int) -> int:
    """When the hold of an order created now expires: after the latest moment the order can be
    breached (its window's end plus the grace and breach periods), with a margin."""
    return (
        max(request.end_us, now_us)
        + policy.grace_period_us
        + policy.breach_period_us
        + HOLD_EXPIRY_MARGIN_US
    )


# ----------------------------------------------------------------------------------------------
# Every later change


def transition(order: Order, event: Event, now_us: int) -> Change:
    """The order after `event` at `now_us`, or FailedPrecondition naming the state it is in."""
    current = order.state_at(now_us)
    if isinstance(event, Sweep):
        return _sweep(order, current, now_us)
    if isinstance(event, Cancel):
        _require(current, (OrderState.CREATED, OrderState.DOING), "cancel")
        return _settled(
            order, OrderState.REVOKED, now_us, (ReleaseHold(fulfilled=False),), event.reason
        )
    if isinstance(event, Complete):
        _require_uncompleted_running(order, current)
        return _complete(order, event, now_us)
    if isinstance(event, Pay):
        _require_completed_running(order, current, "pay")
        return _pay(order, current, event, now_us)
    _require_completed_running(order, current, "modify")
    return _modify(order, current, event, now_us)


def _require(current: OrderState, allowed: tuple[OrderState, ...], action: str) -> None:
    if current not in allowed:
        raise _state_invalid(current, action)


def _require_uncompleted_running(order: Order, current: OrderState) -> None:
    if order.completed or current not in (OrderState.DOING, OrderState.OVERDUE):
        raise _state_invalid(current, "complete")


def _require_completed_running(order: Order, current: OrderState, action: str) -> None:
    if not order.completed or current not in (OrderState.AWAITING_PAYMENT, OrderState.OVERDUE):
        raise _state_invalid(current, action)


def _state_invalid(current: OrderState, action: str) -> FailedPrecondition:
    state = f"ORDER_STATE_{current.name}"
    return FailedPrecondition(
        f"cannot {action} an order in state {state}",
        reason=reasons.ORDER_STATE_INVALID,
        metadata={"state": state},
    )


def _settled(
    order: Order,
    state: OrderState,
    now_us: int,
    effects: tuple[LedgerEffect, ...],
    state_reason: str | None = None,
    **changes: object,
) -> Change:
    updated = order.evolve(
        state=state,
        update_time_us=now_us,
        state_reason=order.state_reason if state_reason is None else state_reason,
        **changes,
    )
    return Change(updated, effects)


def _sweep(order: Order, current: OrderState, now_us: int) -> Change:
    if current is order.state:
        return Change(order, ())
    if current is OrderState.EXPIRED:
        return _settled(order, current, now_us, (ReleaseHold(fulfilled=False),))
    if current is OrderState.BREACHED:
        return _settled(order, current, now_us, _breach_effects(order, now_us))
    return _settled(order, current, now_us, ())


def _breach_effects(order: Order, now_us: int) -> tuple[LedgerEffect, ...]:
    """The broken promise goes into the user's record: what is held (or still due) is charged
    and the obligation closed as defaulted."""
    default = CloseObligation(ObligationOutcome.DEFAULTED, 0, now_us)
    if order.completed:
        return (default,)
    capture = CaptureHold(
        order.decision.waived_minor,
        now_us,
        f"breach of order {order.request.out_order_no}",
        step="breach-capture",
    )
    return (capture, default)


def _complete(order: Order, event: Complete, now_us: int) -> Change:
    credit_charge_minor = min(event.total_minor, order.decision.waived_minor)
    completion = {
        "total_minor": event.total_minor,
        "credit_charge_minor": credit_charge_minor,
        "end_time_us": event.end_time_us,
        "completed_at_us": now_us,
        "post_payments": event.post_payments,
        "post_discounts": event.post_discounts,
    }
    if credit_charge_minor == 0:
        # Nothing to pay on credit: the promise is kept here and now.
        return _settled(
            order, OrderState.DONE, now_us, (ReleaseHold(fulfilled=True),), None, **completion
        )
    due_us = now_us + order.terms.payment_window_us
    capture = CaptureHold(
        credit_charge_minor, due_us, f"order {order.request.out_order_no}", step="capture"
    )
    return _settled(
        order,
        OrderState.AWAITING_PAYMENT,
        now_us,
        (capture,),
        None,
        payment_due_us=due_us,
        **completion,
    )


def _pay(order: Order, current: OrderState, event: Pay, now_us: int) -> Change:
    if event.amount_minor > order.due_minor:
        raise FailedPrecondition(
            f"the payment is above the {order.due_minor} still due",
            reason=reasons.PAYMENT_EXCEEDS_DUE,
        )
    count = order.payment_count + 1
    payment = RecordPayment(event.amount_minor, event.paid_time_us, step=f"payment-{count}")
    paid_minor = order.paid_minor + event.amount_minor
    if paid_minor < order.credit_charge_minor:
        return _settled(
            order, current, now_us, (payment,), None, paid_minor=paid_minor, payment_count=count
        )
    close = _close_paid(order, event.paid_time_us, now_us)
    return _settled(
        order,
        OrderState.DONE,
        now_us,
        (payment, close),
        None,
        paid_minor=paid_minor,
        payment_count=count,
    )


def _modify(order: Order, current: OrderState, event: Modify, now_us: int) -> Change:
    assert order.total_minor is not None
    if event.total_minor >= order.total_minor:
        raise FailedPrecondition(
            "the new total must be below the current one", reason=reasons.TOTAL_NOT_LOWER
        )
    credit_charge_minor = min(event.total_minor, order.decision.waived_minor)
    if credit_charge_minor < order.paid_minor:
        raise FailedPrecondition(
            "the new total must not be below what the user has paid",
            reason=reasons.TOTAL_NOT_LOWER,
        )
    changes: dict[str, object] = {"total_minor": event.total_minor}
    effects: list[LedgerEffect] = []
    if credit_charge_minor < order.credit_charge_minor:
        count = order.adjust_count + 1
        effects.append(AdjustObligation(credit_charge_minor, event.reason, step=f"adjust-{count}"))
        changes |= {"credit_charge_minor": credit_charge_minor, "adjust_count": count}
    if credit_charge_minor == order.paid_minor:
        effects.append(_close_paid(order, now_us, now_us))
        return _settled(order, OrderState.DONE, now_us, tuple(effects), event.reason, **changes)
    return _settled(order, current, now_us, tuple(effects), event.reason, **changes)


def _close_paid(order: Order, paid_time_us: int, now_us: int) -> CloseObligation:
    """Paid in full: on time by the due time, else late by the days after it (at least one)."""
    assert order.payment_due_us is not None
    late_us = paid_time_us - order.payment_due_us
    if late_us <= 0:
        return CloseObligation(ObligationOutcome.ON_TIME, 0, now_us)
    return CloseObligation(
        ObligationOutcome.LATE, math.ceil(late_us / MICROSECONDS_PER_DAY), now_us
    )
