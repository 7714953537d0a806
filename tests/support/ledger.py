"""An in-memory ledger for the waiver's unit tests: the contract's behaviour that the waiver
relies on (idempotency by request id, capacity enforced on holds, holds resolved once,
obligations paid, lowered and closed), and a switch that makes it unreachable."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from services.common.deadline import Deadline
from services.waiver.domain.lifecycle import ObligationOutcome
from services.waiver.service.ports import (
    AccountPosition,
    CapacityExceeded,
    LedgerRefused,
    LedgerUnavailable,
)


@dataclass
class FakeHold:
    hold_id: str
    user_id: str
    amount_minor: int
    state: str = "open"
    captured_minor: int = 0
    fulfilled: bool = False


@dataclass
class FakeObligation:
    obligation_id: str
    user_id: str
    amount_due_minor: int
    due_us: int
    paid_minor: int = 0
    outcome: ObligationOutcome | None = None
    days_late: int = 0


@dataclass
class FakeLedger:
    capacities: dict[str, int] = field(default_factory=dict)
    holds: dict[str, FakeHold] = field(default_factory=dict)
    obligations: dict[str, FakeObligation] = field(default_factory=dict)
    # Every request id answered, with what was asked and what was answered.
    answered: dict[str, tuple[tuple[object, ...], object]] = field(default_factory=dict)
    capacity_changes: list[str] = field(default_factory=list)
    reachable: bool = True
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def _once(self, request_id: str, asked: tuple[object, ...], apply) -> object:  # type: ignore[no-untyped-def]
        if not self.reachable:
            raise LedgerUnavailable("unreachable", reason="LEDGER_UNAVAILABLE")
        if request_id in self.answered:
            previous, answer = self.answered[request_id]
            if previous != asked:
                raise LedgerRefused("REQUEST_ID_REUSED")
        else:
            try:
                answer = apply()
            except CapacityExceeded as refusal:
                answer = refusal
            self.answered[request_id] = (asked, answer)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def held_minor(self, user_id: str) -> int:
        return sum(
            h.amount_minor
            for h in self.holds.values()
            if h.user_id == user_id and h.state == "open"
        )

    def set_waiver_capacity(
        self, request_id, user_id, capacity_minor, reason, deadline: Deadline
    ) -> None:  # type: ignore[no-untyped-def]
        def apply() -> None:
            self.capacities[user_id] = capacity_minor
            self.capacity_changes.append(request_id)

        self._once(request_id, ("capacity", user_id, capacity_minor, reason), apply)

    def account_position(self, user_id: str, deadline: Deadline) -> AccountPosition:
        if not self.reachable:
            raise LedgerUnavailable("unreachable", reason="LEDGER_UNAVAILABLE")
        capacity = self.capacities.get(user_id, 0)
        return AccountPosition(capacity, max(0, capacity - self.held_minor(user_id)))

    def place_hold(
        self, request_id, user_id, amount_minor, expires_in_us, reference, deadline
    ) -> str:  # type: ignore[no-untyped-def]
        def apply() -> str:
            if self.held_minor(user_id) + amount_minor > self.capacities.get(user_id, 0):
                raise CapacityExceeded("INSUFFICIENT_CAPACITY")
            hold_id = f"hold_{next(self._ids)}"
            self.holds[hold_id] = FakeHold(hold_id, user_id, amount_minor)
            return hold_id

        answer = self._once(
            request_id, ("hold", user_id, amount_minor, expires_in_us, reference), apply
        )
        assert isinstance(answer, str)
        return answer

    def _open_hold(self, hold_id: str) -> FakeHold:
        hold = self.holds.get(hold_id)
        if hold is None:
            raise LedgerRefused("HOLD_NOT_FOUND")
        if hold.state != "open":
            raise LedgerRefused("HOLD_ALREADY_RESOLVED")
        return hold

    def capture_hold(
        self, request_id, hold_id, amount_minor, obligation_due_us, purpose, deadline
    ) -> str:  # type: ignore[no-untyped-def]
        def apply() -> str:
            hold = self._open_hold(hold_id)
            hold.state, hold.captured_minor = "captured", amount_minor
            obligation_id = f"obligation_{next(self._ids)}"
            self.obligations[obligation_id] = FakeObligation(
                obligation_id, hold.user_id, amount_minor, obligation_due_us
            )
            return obligation_id

        answer = self._once(
            request_id, ("capture", hold_id, amount_minor, obligation_due_us, purpose), apply
        )
        assert isinstance(answer, str)
        return answer

    def release_hold(self, request_id, hold_id, fulfilled, deadline) -> None:  # type: ignore[no-untyped-def]
        def apply() -> None:
            hold = self._open_hold(hold_id)
            hold.state, hold.fulfilled = "released", fulfilled

        self._once(request_id, ("release", hold_id, fulfilled), apply)

    def _open_obligation(self, obligation_id: str) -> FakeObligation:
        obligation = self.obligations.get(obligation_id)
        if obligation is None:
            raise LedgerRefused("OBLIGATION_NOT_FOUND")
        if obligation.outcome is not None:
            raise LedgerRefused("OBLIGATION_ALREADY_CLOSED")
        return obligation

    def record_payment(self, request_id, obligation_id, amount_minor, paid_at_us, deadline) -> None:  # type: ignore[no-untyped-def]
        def apply() -> None:
            obligation = self._open_obligation(obligation_id)
            if obligation.paid_minor + amount_minor > obligation.amount_due_minor:
                raise LedgerRefused("PAYMENT_EXCEEDS_DUE")
            obligation.paid_minor += amount_minor

        self._once(request_id, ("payment", obligation_id, amount_minor, paid_at_us), apply)

    def adjust_obligation(
        self, request_id, obligation_id, amount_due_minor, reason, deadline
    ) -> None:  # type: ignore[no-untyped-def]
        def apply() -> None:
            obligation = self._open_obligation(obligation_id)
            if amount_due_minor >= obligation.amount_due_minor:
                raise LedgerRefused("AMOUNT_DUE_NOT_LOWER")
            if amount_due_minor < obligation.paid_minor:
                raise LedgerRefused("AMOUNT_DUE_BELOW_PAID")
            obligation.amount_due_minor = amount_due_minor

        self._once(request_id, ("adjust", obligation_id, amount_due_minor, reason), apply)

    def close_obligation(
        self, request_id, obligation_id, outcome, days_late, closed_at_us, deadline
    ) -> None:  # type: ignore[no-untyped-def]
        def apply() -> None:
            obligation = self._open_obligation(obligation_id)
            paid_in_full = obligation.paid_minor == obligation.amount_due_minor
            if (outcome is ObligationOutcome.DEFAULTED) == paid_in_full:
                raise LedgerRefused("OBLIGATION_NOT_PAID_IN_FULL")
            obligation.outcome, obligation.days_late = outcome, days_late

        self._once(request_id, ("close", obligation_id, outcome, days_late, closed_at_us), apply)
