"""The waiver's order use cases: create, read, complete, cancel, pay, modify; and the background
passes that write time-driven changes and finish or undo steps a crash left half done.

Exactly once across three services. An order's row and the ledger's calls form a saga: every
change is first recorded in the order's row as pending (the order it leads to and the ledger
effects that make it so, each with a request id derived from the merchant, the out_order_no and
the step), then the effects run, then the row is settled. A step cut short (a crash, a ledger
out of reach) is finished by replaying the same effects under the same request ids, which the
ledger answers once: by a retry of the same request, or by the recovery pass. The one step that
is undone instead is a creation nobody confirmed: its merchant was told UNAVAILABLE and did not
retry within `create_undo_after_s`, so it may have asked the user for a deposit instead, and a
hold it does not know of would turn into a breach on the user's record. The undo marks the row
before it releases the hold, so a retry that comes too late is told ORDER_BUSY (and then creates
the order anew) instead of settling on a hold being released.

While a change is pending the row refuses other changes (ABORTED, reason ORDER_BUSY: retry), so
two steps of one order never race; the version column makes that hold across replicas.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import structlog

from services.common.clock import Clock
from services.common.deadline import Deadline
from services.common.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SesameError,
    Unavailable,
)
from services.waiver.domain import commands, lifecycle, reasons
from services.waiver.domain.decision import (
    CAPACITY_IN_USE,
    Decision,
    Limit,
    ScoreView,
    WaiverOutcome,
    decide,
)
from services.waiver.domain.lifecycle import (
    AdjustObligation,
    CaptureHold,
    Change,
    CloseObligation,
    LedgerEffect,
    PlaceHold,
    RecordPayment,
    ReleaseHold,
)
from services.waiver.domain.order import Order, OrderRequest, OrderState
from services.waiver.domain.policy import (
    MICROSECONDS_PER_DAY,
    ScenarioPolicy,
    ScoringUnavailableAction,
)
from services.waiver.service.capacity import CapacityKeeper
from services.waiver.service.policies import PolicyService
from services.waiver.service.ports import (
    CapacityExceeded,
    Ledger,
    LedgerRefused,
    NoOrderMetrics,
    OrderConflict,
    OrderMetrics,
    PendingChange,
    RequestOutcome,
    RequestRecord,
    Scores,
    ScoreUnavailable,
    StoredOrder,
    WaiverStorage,
)

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000
# A creation the ledger refuses for capacity is decided again with what is left, at most this
# often (concurrent orders of one user racing for the last of the capacity).
CREATE_ATTEMPTS_MAX = 3
CREATE_METHOD = "CreateOrder"
# How far ahead of Sesame's clock a merchant's clock may be when it reports an end or a payment.
CLOCK_SKEW_TOLERANCE_US = 5 * 60 * 1_000_000
# The ledger's longest hold.
HOLD_DURATION_MAX_US = 366 * MICROSECONDS_PER_DAY


def ledger_request_id(merchant_id: str, out_order_no: str, step: str) -> str:
    """The ledger request id of one step of one order: the same for every retry of the step."""
    digest = hashlib.sha256(f"{merchant_id}\x00{out_order_no}".encode()).hexdigest()[:40]
    return f"waiver:{digest}:{step}"


def ledger_reference(merchant_id: str, out_order_no: str) -> str:
    """What the ledger shows as the hold's reference: the order, readable when it fits."""
    readable = f"{merchant_id}/{out_order_no}"
    return (
        readable if len(readable) <= 128 else ledger_request_id(merchant_id, out_order_no, "order")
    )


@dataclass(frozen=True)
class OrderView:
    """An order as an answer shows it: the stored order and its state at the moment of asking."""

    order: Order
    state: OrderState


@dataclass(frozen=True)
class OrderPage:
    orders: tuple[OrderView, ...]
    next_after: tuple[int, str] | None


def _wall_clock_us() -> int:
    return time.time_ns() // 1000


class OrderService:
    def __init__(
        self,
        storage: WaiverStorage,
        ledger: Ledger,
        scores: Scores,
        capacity: CapacityKeeper,
        policies: PolicyService,
        clock: Clock,
        *,
        currency_code: str,
        unit_minor: int,
        step_lease_s: float = 30.0,
        create_undo_after_s: float = 60.0,
        wall_clock_us: Callable[[], int] = _wall_clock_us,
        metrics: OrderMetrics | None = None,
    ) -> None:
        assert create_undo_after_s >= step_lease_s
        self._metrics: OrderMetrics = metrics or NoOrderMetrics()
        self._storage = storage
        self._ledger = ledger
        self._scores = scores
        self._capacity = capacity
        self._policies = policies
        self._clock = clock
        self._currency_code = currency_code
        self._unit_minor = unit_minor
        self._step_lease_us = round(step_lease_s * 1_000_000)
        self._create_undo_after_us = round(create_undo_after_s * 1_000_000)
        # Leases and undo ages run on the wall clock: a simulation's clock may jump.
        self._wall_clock_us = wall_clock_us

    # ------------------------------------------------------------------------------------------
    # Reads

    def get_order(self, merchant_id: str, out_order_no: str) -> OrderView:
        stored = self._storage.get_order(merchant_id, out_order_no)
        if stored is None or stored.order is None:
            raise _order_not_found()
        return self._view(stored.order)

    def list_orders(
        self, merchant_id: str, state: OrderState | None, after: tuple[int, str] | None, size: int
    ) -> OrderPage:
        found = self._storage.list_orders(merchant_id, state, after, size + 1)
        page = found[:size]
        next_after = None
        if len(found) > size:
            last = page[-1]
            next_after = (last.create_time_us, last.request.out_order_no)
        return OrderPage(tuple(self._view(order) for order in page), next_after)

    def _view(self, order: Order) -> OrderView:
        return OrderView(order, order.state_at(self._clock.now_us()))

    # ------------------------------------------------------------------------------------------
    # Creation

    def create_order(self, command: commands.CreateOrder, deadline: Deadline) -> OrderView:
        request = command.order
        context = self._storage.read_context(
            request.merchant_id,
            request.out_order_no,
            command.request_id,
            scenario_id=request.scenario_id,
            user_id=request.user_id,
        )
        policy = context.policy
        if policy is None:
            raise NotFound(
                "the merchant has no policy for this scenario", reason=reasons.SCENARIO_NOT_FOUND
            )
        self._check_time_range(request, policy)
        fingerprint = request.fingerprint()
        record = RequestRecord(
            request.merchant_id,
            command.request_id,
            CREATE_METHOD,
            fingerprint,
            request.out_order_no,
            RequestOutcome.APPLIED,
        )
        stored = context.stored
        if stored is not None and (stored.order is not None or stored.pending is not None):
            if stored.fingerprint != fingerprint:
                raise AlreadyExists(
                    "this out_order_no was created with other parameters",
                    reason=reasons.ORDER_ALREADY_EXISTS,
                )
            if stored.pending is not None and stored.pending.creating:
                return self._finish_creation(stored, policy, deadline)
            assert stored.order is not None
            return self._view(stored.order)
        _check_request_id(record, context.request)
        score = self._score_or_fallback(request.user_id, policy, deadline)
        capacity_minor = self._capacity.ensure(request.user_id, score, deadline, context.capacity)
        decision = self._decide(request.risk_minor, policy, score, capacity_minor, capacity_minor)
        attempt = 1 if stored is None else stored.create_attempt + 1
        change = lifecycle.create(request, decision, policy, self._clock.now_us(), attempt)
        pending = PendingChange(change, command.request_id, self._wall_clock_us(), creating=True)
        fresh = StoredOrder(
            request.merchant_id,
            request.out_order_no,
            fingerprint,
            None,
            pending,
            version=(0 if stored is None else stored.version) + 1,
            create_attempt=attempt,
        )
        if not change.effects:
            # Nothing to hold (a denial): the order is settled as it is written.
            fresh = replace(fresh, order=change.order, pending=None)
        try:
            if stored is None:
                self._storage.insert_order(fresh, record)
            else:
                self._storage.update_order(fresh, stored.version, record)
        except OrderConflict:
            # Another call created the same order meanwhile: answer as a retry would.
            raise _busy() from None
        if fresh.order is not None:
            self._metrics.order_settled(None, fresh.order)
            return self._view(fresh.order)
        return self._finish_creation(fresh, policy, deadline)

    def _check_time_range(self, request: OrderRequest, policy: ScenarioPolicy) -> None:
        """The window must end in the future, fit the scenario, and keep the hold within the
        ledger's longest hold."""
        now_us = self._clock.now_us()
        problem = None
        if request.end_us <= now_us:
            problem = "must end in the future"
        elif request.end_us - request.start_us > policy.max_service_duration_us:
            problem = "must be no longer than the scenario's max_service_duration"
        elif lifecycle.hold_expiry_us(request, policy, now_us) - now_us > HOLD_DURATION_MAX_US:
            problem = (
                "must end early enough that the hold, which lasts to the end of the window plus"
                " the grace and breach periods and a week, stays within 366 days"
            )
        if problem is not None:
            raise InvalidArgument.for_field(
                "time_range", problem, reason=reasons.TIME_RANGE_INVALID
            )

    def _score_or_fallback(
        self, user_id: str, policy: ScenarioPolicy, deadline: Deadline
    ) -> ScoreView | None:
        """The user's score, or None when none can be had and the policy then asks for the
        whole deposit; a policy that refuses orders without a score makes it UNAVAILABLE."""
        try:
            return self._scores.get_score(user_id, deadline)
        except ScoreUnavailable:
            if policy.scoring_unavailable_action is ScoringUnavailableAction.REFUSE_ORDER:
                raise Unavailable(
                    "the user's credit cannot be checked now; retry with the same request_id",
                    reason=reasons.SCORE_UNAVAILABLE,
                ) from None
            log.warning("order_decided_without_score", scenario_id=policy.scenario_id)
            return None

    def _decide(
        self,
        risk_minor: int,
        policy: ScenarioPolicy,
        score: ScoreView | None,
        capacity_minor: int,
        remaining_minor: int,
    ) -> Decision:
        return decide(
            risk_minor=risk_minor,
            policy=policy,
            score=score,
            capacity_minor=capacity_minor,
            remaining_capacity_minor=remaining_minor,
            currency_code=self._currency_code,
            unit_minor=self._unit_minor,
        )

    def _finish_creation(
        self, stored: StoredOrder, policy: ScenarioPolicy | None, deadline: Deadline
    ) -> OrderView:
        """Runs a pending creation to its end. A hold the ledger refuses for capacity is decided
        again with what the user's other holds leave, under a new attempt number."""
        assert stored.pending is not None and stored.pending.creating
        if stored.pending.undoing:
            # Too late to confirm: once the undo is done, a retry creates the order anew.
            raise _busy()
        for _ in range(CREATE_ATTEMPTS_MAX):
            try:
                return self._view(self._run_pending(stored, deadline))
            except CapacityExceeded:
                try:
                    stored = self._redecide_after_refusal(stored, policy, deadline)
                except OrderConflict:
                    raise _busy() from None  # the recovery pass began to undo it meanwhile
        return self._view(self._run_pending(stored, deadline, capacity_exhausted=True))

    def _redecide_after_refusal(
        self, stored: StoredOrder, policy: ScenarioPolicy | None, deadline: Deadline
    ) -> StoredOrder:
        assert stored.pending is not None
        previous = stored.pending.change.order
        position = self._ledger.account_position(previous.request.user_id, deadline)
        policy = policy or self._policies.get(
            previous.request.merchant_id, previous.request.scenario_id
        )
        score_view = self._scores.get_score(previous.request.user_id, deadline)
        decision = self._decide(
            previous.request.risk_minor,
            policy,
            score_view,
            position.capacity_minor,
            position.available_minor,
        )
        attempt = stored.create_attempt + 1
        change = lifecycle.create(
            previous.request, decision, policy, previous.create_time_us, attempt
        )
        return self._save_pending(
            stored, replace(stored.pending, change=change), create_attempt=attempt
        )

    # ------------------------------------------------------------------------------------------
    # Every later change

    def complete_order(self, command: commands.CompleteOrder, deadline: Deadline) -> OrderView:
        def event(order: Order) -> lifecycle.Event:
            if command.total_minor > order.request.risk_minor:
                raise InvalidArgument.for_field(
                    "total_amount",
                    "must not be above the order's risk amount",
                    reason=reasons.TOTAL_EXCEEDS_RISK_AMOUNT,
                )
            self._require_not_in_future("end_time", command.end_time_us)
            return lifecycle.Complete(
                command.total_minor,
                command.end_time_us,
                command.post_payments,
                command.post_discounts,
            )

        return self._change(command, event, deadline)

    def cancel_order(self, command: commands.CancelOrder, deadline: Deadline) -> OrderView:
        return self._change(command, lambda _: lifecycle.Cancel(command.reason), deadline)

    def sync_payment(self, command: commands.SyncPayment, deadline: Deadline) -> OrderView:
        def event(order: Order) -> lifecycle.Event:
            self._require_not_in_future("paid_time", command.paid_time_us)
            return lifecycle.Pay(command.amount_minor, command.paid_time_us)

        return self._change(command, event, deadline)

    def _require_not_in_future(self, field: str, moment_us: int) -> None:
        """A time the merchant reports must have come (within a tolerance for clock skew)."""
        if moment_us > self._clock.now_us() + CLOCK_SKEW_TOLERANCE_US:
            raise InvalidArgument.for_field(
                field, "must not be in the future", reason=reasons.TIMESTAMP_INVALID
            )

    def modify_order(self, command: commands.ModifyOrder, deadline: Deadline) -> OrderView:
        return self._change(
            command, lambda _: lifecycle.Modify(command.total_minor, command.reason), deadline
        )

    def _change(
        self,
        command: commands.OrderCommand,
        event_for: Callable[[Order], lifecycle.Event],
        deadline: Deadline,
    ) -> OrderView:
        method = type(command).__name__
        record = RequestRecord(
            command.merchant_id,
            command.request_id,
            method,
            _request_hash(method, command),
            command.out_order_no,
            RequestOutcome.APPLIED,
        )
        context = self._storage.read_context(
            command.merchant_id, command.out_order_no, command.request_id
        )
        stored = context.stored
        if stored is None or stored.order is None:
            raise _order_not_found()
        replayed = self._replayed(record, context.request, stored, deadline)
        if replayed is not None:
            return replayed
        if stored.pending is not None:
            stored = self._resume_if_stalled(stored, deadline)
        order = stored.order
        assert order is not None
        event = event_for(order)
        try:
            change = lifecycle.transition(order, event, self._clock.now_us())
        except FailedPrecondition as refusal:
            self._save_refusal(record, refusal)
            raise
        pending = PendingChange(change, command.request_id, self._wall_clock_us(), creating=False)
        try:
            stored = self._save_pending(stored, pending, record=record)
        except OrderConflict:
            raise _busy() from None
        return self._view(self._run_pending(stored, deadline))

    def _replayed(
        self,
        record: RequestRecord,
        found: RequestRecord | None,
        stored: StoredOrder,
        deadline: Deadline,
    ) -> OrderView | None:
        """The answer to a retry of a request already seen (`found`, its record), or None for a
        new request."""
        if found is None:
            return None
        if found.method != record.method or found.request_hash != record.request_hash:
            raise _request_id_reused()
        if found.outcome == RequestOutcome.REFUSED:
            raise FailedPrecondition(
                found.error_message,
                reason=found.error_reason,
                metadata={"state": found.error_state} if found.error_state else None,
            )
        if stored.pending is not None and stored.pending.request_id == record.request_id:
            return self._view(self._run_pending(stored, deadline))
        assert stored.order is not None
        return self._view(stored.order)

    def _save_refusal(self, record: RequestRecord, refusal: SesameError) -> None:
        refused = replace(
            record,
            outcome=RequestOutcome.REFUSED,
            error_reason=refusal.reason,
            error_message=refusal.message,
            error_state=refusal.metadata.get("state", ""),
        )
        with self._storage.transaction() as transaction:
            if transaction.find_request(record.merchant_id, record.request_id) is None:
                transaction.save_request(refused)

    def _resume_if_stalled(self, stored: StoredOrder, deadline: Deadline) -> StoredOrder:
        """Another change is in flight: finish it if its lease has run out, else refuse."""
        assert stored.pending is not None
        if self._wall_clock_us() - stored.pending.since_us < self._step_lease_us:
            raise _busy()
        self._run_pending(stored, deadline)
        refreshed = self._storage.get_order(stored.merchant_id, stored.out_order_no)
        assert refreshed is not None and refreshed.order is not None
        if refreshed.pending is not None:
            raise _busy()
        return refreshed

    # ------------------------------------------------------------------------------------------
    # Running a pending change

    def _save_pending(
        self,
        stored: StoredOrder,
        pending: PendingChange,
        *,
        record: RequestRecord | None = None,
        create_attempt: int | None = None,
    ) -> StoredOrder:
        updated = replace(
            stored,
            pending=pending,
            version=stored.version + 1,
            create_attempt=stored.create_attempt if create_attempt is None else create_attempt,
        )
        self._storage.save_pending(updated, stored.version, record)
        return updated

    def _run_pending(
        self, stored: StoredOrder, deadline: Deadline, *, capacity_exhausted: bool = False
    ) -> Order:
        """Runs the pending change's effects (each lands once at the ledger) and settles the row;
        the order as settled. `capacity_exhausted` settles a creation as DENIED when even the
        last attempt's hold was refused."""
        assert stored.pending is not None
        change = stored.pending.change
        if capacity_exhausted:
            change = _denied_for_capacity(change)
        settled = self._run_effects(change, deadline)
        final = StoredOrder(
            stored.merchant_id,
            stored.out_order_no,
            stored.fingerprint,
            settled,
            None,
            stored.version + 1,
            stored.create_attempt,
        )
        try:
            self._storage.update_order(final, stored.version)
        except OrderConflict:
            # Someone else finished the same change (a retry, the recovery pass) first.
            current = self._storage.get_order(stored.merchant_id, stored.out_order_no)
            if current is None or current.order is None:
                raise _busy() from None
            return current.order
        self._metrics.order_settled(stored.order, settled)
        return settled

    def _run_effects(self, change: Change, deadline: Deadline) -> Order:
        order = change.order
        merchant_id, out_order_no = order.key
        hold_id, obligation_id = order.hold_id, order.obligation_id
        for effect in change.effects:
            request_id = ledger_request_id(merchant_id, out_order_no, effect.step)
            hold_id, obligation_id = self._run_effect(
                effect, request_id, order, hold_id, obligation_id, deadline
            )
        return order.evolve(hold_id=hold_id, obligation_id=obligation_id)

    def _run_effect(
        self,
        effect: LedgerEffect,
        request_id: str,
        order: Order,
        hold_id: str,
        obligation_id: str,
        deadline: Deadline,
    ) -> tuple[str, str]:
        ledger = self._ledger
        if isinstance(effect, PlaceHold):
            hold_id = ledger.place_hold(
                request_id,
                order.request.user_id,
                effect.amount_minor,
                effect.expires_in_us,
                ledger_reference(*order.key),
                deadline,
            )
        elif isinstance(effect, CaptureHold):
            obligation_id = ledger.capture_hold(
                request_id,
                hold_id,
                effect.amount_minor,
                effect.obligation_due_us,
                effect.purpose,
                deadline,
            )
        elif isinstance(effect, ReleaseHold):
            ledger.release_hold(request_id, hold_id, effect.fulfilled, deadline)
        elif isinstance(effect, RecordPayment):
            ledger.record_payment(
                request_id, obligation_id, effect.amount_minor, effect.paid_at_us, deadline
            )
        elif isinstance(effect, AdjustObligation):
            ledger.adjust_obligation(
                request_id, obligation_id, effect.amount_due_minor, effect.reason, deadline
            )
        elif isinstance(effect, CloseObligation):
            ledger.close_obligation(
                request_id,
                obligation_id,
                effect.outcome,
                effect.days_late,
                effect.closed_at_us,
                deadline,
            )
        return hold_id, obligation_id

    # ------------------------------------------------------------------------------------------
    # Background passes

    def sweep(self, limit: int = 100) -> int:
        """Writes the time-driven changes whose time has come (start, expiry, overdue, breach),
        earliest first; the number of orders changed."""
        changed = 0
        for merchant_id, out_order_no in self._storage.orders_due(self._clock.now_us(), limit):
            stored = self._storage.get_order(merchant_id, out_order_no)
            if stored is None or stored.order is None or stored.pending is not None:
                continue
            change = lifecycle.transition(stored.order, lifecycle.Sweep(), self._clock.now_us())
            if change.order.state is stored.order.state:
                continue
            pending = PendingChange(change, "", self._wall_clock_us(), creating=False)
            try:
                self._run_pending(self._save_pending(stored, pending), Deadline.none())
            except OrderConflict:
                continue  # a merchant's step got there first; the next pass looks again
            changed += 1
        return changed

    def recover(self, limit: int = 100) -> int:
        """Finishes the changes left pending longer than a step may take, and undoes the
        creations nobody confirmed in time; the number of orders handled."""
        handled = 0
        now_us = self._wall_clock_us()
        for merchant_id, out_order_no in self._storage.stalled_orders(
            now_us - self._step_lease_us, limit
        ):
            stored = self._storage.get_order(merchant_id, out_order_no)
            if stored is None or stored.pending is None:
                continue
            age_us = now_us - stored.pending.since_us
            try:
                if not stored.pending.creating:
                    self._run_pending(stored, Deadline.none())
                elif age_us >= self._create_undo_after_us:
                    self._undo_creation(stored)
                else:
                    continue  # its merchant may still retry it
            except OrderConflict:
                continue
            except LedgerRefused as refusal:
                # The ledger and this order disagree, and replaying the step will not change the
                # ledger's answer: the order stays pending for an operator, and the pass goes on
                # to the others, which would otherwise wait behind it forever.
                log.error("order_recovery_refused", reason=refusal.reason)
                continue
            handled += 1
        return handled

    def _undo_creation(self, stored: StoredOrder) -> None:
        """Releases whatever hold the creation placed and forgets the order, keeping its attempt
        number so a later creation of the same order uses new ledger request ids.

        The row is marked as undoing before the ledger is touched, under its version: a retry
        that settled the creation first makes this raise `OrderConflict` and nothing is
        released, and once the mark is written no retry can settle the creation on a hold about
        to be released (it answers ORDER_BUSY until the undo is done, the recovery pass's or,
        after a crash, the next one's)."""
        pending = stored.pending
        assert pending is not None
        if not pending.undoing:
            pending = replace(pending, undoing=True)
            stored = self._save_pending(stored, pending)
        change = pending.change
        hold = next((effect for effect in change.effects if isinstance(effect, PlaceHold)), None)
        if hold is not None:
            merchant_id, out_order_no = change.order.key
            try:
                hold_id = self._ledger.place_hold(
                    ledger_request_id(merchant_id, out_order_no, hold.step),
                    change.order.request.user_id,
                    hold.amount_minor,
                    hold.expires_in_us,
                    ledger_reference(merchant_id, out_order_no),
                    Deadline.none(),
                )
            except CapacityExceeded:
                hold_id = ""
            if hold_id:
                self._ledger.release_hold(
                    ledger_request_id(merchant_id, out_order_no, f"undo-{hold.step}"),
                    hold_id,
                    False,
                    Deadline.none(),
                )
        forgotten = replace(stored, order=None, pending=None, version=stored.version + 1)
        with self._storage.transaction() as transaction:
            transaction.update_order(forgotten, stored.version)
        log.warning("order_creation_undone", create_attempt=stored.create_attempt)


def _denied_for_capacity(change: Change) -> Change:
    """The creation settled as DENIED: concurrent orders of the user took all of the capacity."""
    order = change.order
    decision = Decision(
        WaiverOutcome.DENIED, 0, order.request.risk_minor, Limit.CAPACITY, (CAPACITY_IN_USE,)
    )
    return Change(order.evolve(decision=decision, state=OrderState.DENIED), ())


def _request_hash(method: str, command: object) -> str:
    plain = asdict(command)  # type: ignore[call-overload]
    plain.pop("request_id", None)
    canonical = json.dumps([method, plain], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _order_not_found() -> NotFound:
    return NotFound("no such order", reason=reasons.ORDER_NOT_FOUND)


def _busy() -> Conflict:
    return Conflict(
        "another step of this order is in flight; retry with the same request_id",
        reason=reasons.ORDER_BUSY,
    )


def _check_request_id(record: RequestRecord, found: RequestRecord | None) -> None:
    """A creation's request id recorded for another request is REQUEST_ID_REUSED."""
    if found is not None and (
        found.method != record.method
        or found.request_hash != record.request_hash
        or found.out_order_no != record.out_order_no
    ):
        raise _request_id_reused()


def _request_id_reused() -> Conflict:
    return Conflict(
        "this request_id was used for a different request", reason=reasons.REQUEST_ID_REUSED
    )
