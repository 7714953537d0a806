"""An order as the waiver keeps it: what the merchant asked, what Sesame decided, where it is.

Times are integer microseconds since the Unix epoch (UTC); amounts integer minor units of the
waiver's currency.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import asdict, dataclass, replace

from services.waiver.domain.decision import Decision
from services.waiver.domain.policy import MICROSECONDS_PER_DAY, OrderTerms

# An order not started this long after it was created expires and its hold is released.
EXPIRY_AFTER_CREATION_US = 30 * MICROSECONDS_PER_DAY


class OrderState(enum.Enum):
    CREATED = "created"
    DOING = "doing"
    AWAITING_PAYMENT = "awaiting_payment"
    DONE = "done"
    REVOKED = "revoked"
    EXPIRED = "expired"
    OVERDUE = "overdue"
    BREACHED = "breached"
    DENIED = "denied"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_STATES


_FINAL_STATES = frozenset(
    {
        OrderState.DONE,
        OrderState.REVOKED,
        OrderState.EXPIRED,
        OrderState.BREACHED,
        OrderState.DENIED,
    }
)


class RiskFundType(enum.Enum):
    DEPOSIT = "deposit"
    ADVANCE = "advance"
    CASH_DEPOSIT = "cash_deposit"
    ESTIMATE_ORDER_COST = "estimate_order_cost"


@dataclass(frozen=True)
class LineItem:
    name: str
    amount_minor: int
    count: int
    description: str = ""

    @property
    def total_minor(self) -> int:
        return self.amount_minor * self.count


def line_total_minor(payments: tuple[LineItem, ...], discounts: tuple[LineItem, ...]) -> int:
    """Payments minus discounts."""
    return sum(item.total_minor for item in payments) - sum(item.total_minor for item in discounts)


@dataclass(frozen=True)
class OrderRequest:
    """What the merchant asked at creation; creating again with the same request returns the
    order, with another request fails (the fingerprint tells them apart)."""

    merchant_id: str
    out_order_no: str
    user_id: str
    scenario_id: str
    risk_fund_type: RiskFundType
    risk_minor: int
    start_us: int
    end_us: int
    post_payments: tuple[LineItem, ...] = ()
    post_discounts: tuple[LineItem, ...] = ()
    language_code: str = "en"

    def fingerprint(self) -> str:
        plain = asdict(self)
        plain["risk_fund_type"] = self.risk_fund_type.value
        canonical = json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Order:
    """An order as stored. `state` is the state last written; `state_at` says what it is at a
    given moment (time-driven changes show at once, before the sweeper writes them)."""

    request: OrderRequest
    decision: Decision
    terms: OrderTerms
    state: OrderState
    create_time_us: int
    update_time_us: int
    hold_id: str = ""
    obligation_id: str = ""
    # Set at completion: the charge (payments minus discounts), the part of it on credit (what
    # was captured from the hold), when the service ended and when the credit charge is due.
    total_minor: int | None = None
    credit_charge_minor: int = 0
    end_time_us: int | None = None
    completed_at_us: int | None = None
    payment_due_us: int | None = None
    paid_minor: int = 0
    post_payments: tuple[LineItem, ...] = ()
    post_discounts: tuple[LineItem, ...] = ()
    state_reason: str = ""
    # Counters that number the ledger steps that can happen more than once.
    create_attempt: int = 1
    payment_count: int = 0
    adjust_count: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return self.request.merchant_id, self.request.out_order_no

    @property
    def completed(self) -> bool:
        return self.total_minor is not None

    @property
    def due_minor(self) -> int:
        """What the user still owes on credit."""
        return self.credit_charge_minor - self.paid_minor

    def deadline_us(self) -> int | None:
        """The moment the current promise falls due: returning (the window's end) before
        completion, paying (the due time) after; None when no promise is running."""
        if self.state.is_final:
            return None
        if self.completed:
            return self.payment_due_us
        return self.request.end_us

    def overdue_at_us(self) -> int | None:
        deadline_us = self.deadline_us()
        return None if deadline_us is None else deadline_us + self.terms.grace_period_us

    def breached_at_us(self) -> int | None:
        overdue_at_us = self.overdue_at_us()
        return None if overdue_at_us is None else overdue_at_us + self.terms.breach_period_us

    def expires_at_us(self) -> int | None:
        """When an order still CREATED expires: 30 days after creation, if it has not started."""
        expiry_us = self.create_time_us + EXPIRY_AFTER_CREATION_US
        if self.state is OrderState.CREATED and self.request.start_us > expiry_us:
            return expiry_us
        return None

    def state_at(self, now_us: int) -> OrderState:
        """The state at `now_us`, time-driven changes included."""
        if self.state.is_final:
            return self.state
        expires_at_us = self.expires_at_us()
        if expires_at_us is not None and now_us >= expires_at_us:
            return OrderState.EXPIRED
        if self.state is OrderState.CREATED and now_us < self.request.start_us:
            return OrderState.CREATED
        breached_at_us = self.breached_at_us()
        overdue_at_us = self.overdue_at_us()
        assert breached_at_us is not None and overdue_at_us is not None
        if now_us >= breached_at_us:
            return OrderState.BREACHED
        if now_us >= overdue_at_us:
            return OrderState.OVERDUE
        return OrderState.AWAITING_PAYMENT if self.completed else OrderState.DOING

    def next_change_us(self) -> int | None:
        """When the next time-driven change is due (for the sweeper); None when none can come."""
        if self.state.is_final:
            return None
        if self.state is OrderState.CREATED:
            expires_at_us = self.expires_at_us()
            return expires_at_us if expires_at_us is not None else self.request.start_us
        if self.state is OrderState.OVERDUE:
            return self.breached_at_us()
        return self.overdue_at_us()

    def evolve(self, **changes: object) -> Order:
        return replace(self, **changes)  # type: ignore[arg-type]
