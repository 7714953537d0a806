"""What the waiver's use cases need from the outside, declared here and implemented in adapters/
(the ledger and the score service over gRPC) and storage/ (SQLite or PostgreSQL)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from services.common.deadline import Deadline
from services.common.errors import Unavailable
from services.waiver.domain.decision import ScoreView
from services.waiver.domain.lifecycle import Change, ObligationOutcome
from services.waiver.domain.order import Order, OrderState
from services.waiver.domain.policy import ScenarioPolicy

# ----------------------------------------------------------------------------------------------
# The score service


class ScoreUnavailable(Unavailable):
    """No score could be had in time."""


class Scores(Protocol):
    def get_score(self, user_id: str, deadline: Deadline) -> ScoreView:
        """The user's credit as the waiver may use it; raises `ScoreUnavailable`."""
        ...


@dataclass(frozen=True)
class FetchedScore:
    """A score as the score service gave it, with what says how long it stands: the global
    sequence of the user's latest ledger entry it reflects, and when the ledger was read for it
    (None when the service did not say)."""

    view: ScoreView
    ledger_sequence: int
    data_as_of_us: int | None


class ScoreSource(Protocol):
    def fetch_score(self, user_id: str, deadline: Deadline) -> FetchedScore:
        """The user's score from the score service; raises `ScoreUnavailable`."""
        ...


# ----------------------------------------------------------------------------------------------
# The ledger


class OrderMetrics(Protocol):
    """What operators count about orders (decisions, states reached, amounts waived and lost)."""

    def order_settled(self, previous: Order | None, settled: Order) -> None:
        """An order's change is settled: `previous` is the order before it (None for a
        creation), `settled` the order after."""


class NoOrderMetrics:
    def order_settled(self, previous: Order | None, settled: Order) -> None:
        return None


class LedgerUnavailable(Unavailable):
    """The ledger could not be reached in time; nothing is known about the request's fate."""


class CapacityExceeded(Exception):
    """The ledger refused a hold: the user's open holds would exceed the waiver capacity."""


class LedgerRefused(Exception):
    """The ledger refused a step for a reason the waiver does not expect (its state and the
    ledger's disagree); the step stays pending and is retried by the recovery pass."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AccountPosition:
    capacity_minor: int
    available_minor: int


class Ledger(Protocol):
    """The ledger's mutations as the waiver uses them; every one idempotent on its request id.
    Each raises `LedgerUnavailable` when the ledger cannot answer in time."""

    def set_waiver_capacity(
        self, request_id: str, user_id: str, capacity_minor: int, reason: str, deadline: Deadline
    ) -> None: ...

    def account_position(self, user_id: str, deadline: Deadline) -> AccountPosition: ...

    def place_hold(
        self,
        request_id: str,
        user_id: str,
        amount_minor: int,
        expires_in_us: int,
        reference: str,
        deadline: Deadline,
    ) -> str:
        """The hold's id; raises `CapacityExceeded`."""
        ...

    def capture_hold(
        self,
        request_id: str,
        hold_id: str,
        amount_minor: int,
        obligation_due_us: int,
        purpose: str,
        deadline: Deadline,
    ) -> str:
        """The id of the obligation created for the captured amount."""
        ...

    def release_hold(
        self, request_id: str, hold_id: str, fulfilled: bool, deadline: Deadline
    ) -> None: ...

    def record_payment(
        self,
        request_id: str,
        obligation_id: str,
        amount_minor: int,
        paid_at_us: int,
        deadline: Deadline,
    ) -> None: ...

    def adjust_obligation(
        self,
        request_id: str,
        obligation_id: str,
        amount_due_minor: int,
        reason: str,
        deadline: Deadline,
    ) -> None: ...

    def close_obligation(
        self,
        request_id: str,
        obligation_id: str,
        outcome: ObligationOutcome,
        days_late: int,
        closed_at_us: int,
        deadline: Deadline,
    ) -> None: ...


# ----------------------------------------------------------------------------------------------
# Storage


@dataclass(frozen=True)
class PendingChange:
    """A change recorded before its ledger effects run: the order it leads to, the effects, and
    the request that started it ("" for the sweeper)."""

    change: Change
    request_id: str
    since_us: int  # wall-clock time, for the recovery pass's lease
    creating: bool  # the order's first change: its creation
    # A creation nobody confirmed in time, which the recovery pass is undoing: no retry may
    # settle it any more (see OrderService._undo_creation).
    undoing: bool = False


@dataclass(frozen=True)
class StoredOrder:
    """An order's row: the settled order (None until its creation has finished), the change in
    flight if any, and what identifies its creation."""

    merchant_id: str
    out_order_no: str
    fingerprint: str
    order: Order | None
    pending: PendingChange | None
    version: int
    create_attempt: int


class RequestOutcome:
    APPLIED = "applied"
    REFUSED = "refused"


@dataclass(frozen=True)
class RequestRecord:
    """What a mutation's request id was used for, and a refusal to replay to its retries."""

    merchant_id: str
    request_id: str
    method: str
    request_hash: str
    out_order_no: str
    outcome: str
    error_reason: str = ""
    error_message: str = ""
    error_state: str = ""


@dataclass(frozen=True)
class CapacityRecord:
    """The capacity the waiver last set for a user in the ledger, and whether the ledger has it."""

    user_id: str
    band: str
    model_version: str
    capacity_minor: int
    change_number: int
    applied: bool


@dataclass(frozen=True)
class OrderContext:
    """What a step of an order reads before it decides, read together: the order's row, the
    record of the request's id, and for a creation the scenario's policy and the user's
    capacity record (each None when absent or not asked for)."""

    stored: StoredOrder | None
    request: RequestRecord | None
    policy: ScenarioPolicy | None = None
    capacity: CapacityRecord | None = None


class OrderConflict(Exception):
    """The order's row changed since it was read; read it again."""


class WaiverTransaction(Protocol):
    """One database transaction; every write of a use case step goes through one."""

    def get_order(self, merchant_id: str, out_order_no: str) -> StoredOrder | None: ...

    def insert_order(self, stored: StoredOrder) -> None:
        """Raises `OrderConflict` when the key exists."""
        ...

    def update_order(self, stored: StoredOrder, expected_version: int) -> None:
        """Writes `stored` (whose version is expected_version + 1); raises `OrderConflict` when
        the row's version is no longer `expected_version`."""
        ...

    def save_pending(self, stored: StoredOrder, expected_version: int) -> None:
        """`update_order` of a row whose settled order is the one read at `expected_version`:
        writes only its change in flight, version and create attempt."""
        ...

    def find_request(self, merchant_id: str, request_id: str) -> RequestRecord | None: ...

    def save_request(self, record: RequestRecord) -> None: ...

    def get_policy(self, merchant_id: str, scenario_id: str) -> ScenarioPolicy | None: ...

    def put_policy(self, policy: ScenarioPolicy) -> None: ...

    def get_capacity(self, user_id: str) -> CapacityRecord | None: ...

    def save_capacity(self, record: CapacityRecord, previous: CapacityRecord | None) -> None:
        """Writes `record` if the user's row is still `previous` (None: no row yet); else
        `OrderConflict`."""
        ...


class WaiverStorage(Protocol):
    def transaction(self) -> AbstractContextManager[WaiverTransaction]:
        """Commits when the block ends normally, rolls back when it raises."""
        ...

    def get_order(self, merchant_id: str, out_order_no: str) -> StoredOrder | None: ...

    def read_context(
        self,
        merchant_id: str,
        out_order_no: str,
        request_id: str,
        *,
        scenario_id: str = "",
        user_id: str = "",
    ) -> OrderContext:
        """The order, its request record and (when named) the policy and the user's capacity
        record, in one read."""
        ...

    def insert_order(self, stored: StoredOrder, request: RequestRecord) -> None:
        """`WaiverTransaction.insert_order` and `save_request` as a transaction of their own:
        a new order's row and the record of the request that creates it, or, with
        `OrderConflict`, neither."""
        ...

    def update_order(
        self, stored: StoredOrder, expected_version: int, request: RequestRecord | None = None
    ) -> None:
        """`WaiverTransaction.update_order`, and `save_request` of `request` when given, as a
        transaction of their own."""
        ...

    def save_pending(
        self, stored: StoredOrder, expected_version: int, request: RequestRecord | None = None
    ) -> None:
        """`WaiverTransaction.save_pending`, and `save_request` of `request` when given, as a
        transaction of their own."""
        ...

    def list_orders(
        self,
        merchant_id: str,
        state: OrderState | None,
        after: tuple[int, str] | None,
        limit: int,
    ) -> list[Order]:
        """Settled orders, newest first (by creation time, then out_order_no, descending),
        starting after the (create_time_us, out_order_no) given."""
        ...

    def list_policies(
        self, merchant_id: str, after_scenario_id: str, limit: int
    ) -> list[ScenarioPolicy]: ...

    def orders_due(self, now_us: int, limit: int) -> list[tuple[str, str]]:
        """Keys of settled orders without a change in flight whose next time-driven change is
        due by `now_us`, earliest first."""
        ...

    def stalled_orders(self, since_before_us: int, limit: int) -> list[tuple[str, str]]:
        """Keys of orders whose change in flight started before `since_before_us` (wall clock)."""
        ...

    def close(self) -> None: ...
