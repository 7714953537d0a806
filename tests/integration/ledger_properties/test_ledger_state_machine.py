"""The ledger against a reference model, step by step (Hypothesis stateful testing).

Hypothesis drives the in-process service layer (`LedgerService` over `SqlLedgerStorage`, with a
fake clock the rules advance) through random sequences of every mutation: capacities, holds and
their captures, releases and expiries, obligations, payments, reductions and closings, partner
statements (new, identical re-sends and corrections), replays of stored requests, request ids
reused for other requests, and invalid requests. A small in-memory model, written from the
contract in ledger_service.proto and not from the ledger's code, predicts every answer.

After every step the ledger must agree with the model and with itself:
  * every account summary (capacity, held, available, outstanding, open holds, outcome counts,
    last user sequence), every hold, every obligation, every statement and credit line;
  * the journal holds exactly the entries the model predicts (so a refused, invalid or replayed
    request wrote nothing), with gap-free global and per-user sequences;
  * replaying the journal: no placement ever took open, unexpired holds above the capacity in
    force; no hold was resolved twice; no capture exceeded its hold;
  * `verify_chain()` (every hash chain and every projection rebuilt from the journal) is intact.

Each example gets a fresh database. The default run is quick; the `slow` variant searches more.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from services.common.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SesameError,
)
from services.common.money import Money
from services.ledger.domain import commands
from services.ledger.domain.records import (
    ObligationOutcome,
    RepaymentStatus,
    StatementPeriod,
)
from services.ledger.domain.validation import DUE_TIME_MIN_US
from services.ledger.service.ledger_service import LedgerService
from services.ledger.storage.sql_storage import open_ledger_storage
from tests.support.clock import FakeClock
from tests.support.ids import SequentialIds

SECOND_US = 1_000_000
DAY_S = 86_400
CURRENCY = "CNY"
OTHER_CURRENCY = "USD"
USERS = ("ana", "bo")
STATEMENT_USERS = ("ana", "bo", "cy")
PARTNERS = ("bank-a", "bank-b")
PERIODS = tuple(StatementPeriod(2025, month) for month in (1, 2, 3, 4))

# Hypothesis draws the first option of a sampled_from more often than the others, so options are
# listed interesting-first (boundaries before the obvious values).
OUTCOMES = [ObligationOutcome.LATE, ObligationOutcome.ON_TIME, ObligationOutcome.DEFAULTED]
# Mostly the main currency, so that most requests get past the currency rules.
currencies = st.sampled_from([CURRENCY] * 6 + [OTHER_CURRENCY])
users = st.sampled_from(USERS)


# ----------------------------------------------------------------------------------------------
# The reference model


@dataclass
class ModelHold:
    hold_id: str
    user_id: str
    currency: str
    amount: int
    reference: str
    placed_at: int
    expires_at: int
    # OPEN until the journal records a capture, a release or an expiry.
    state: str = "OPEN"
    captured: int = 0
    resolved_at: int | None = None
    obligation_id: str = ""
    fulfilled: bool = False

    def uses_capacity(self, now: int) -> bool:
        return self.state == "OPEN" and now < self.expires_at

    def view(self, now: int) -> tuple[Any, ...]:
        """What GetHold shows: an open hold past its expiry reads as EXPIRED at its expiry."""
        state, resolved_at = self.state, self.resolved_at
        if state == "OPEN" and now >= self.expires_at:
            state, resolved_at = "EXPIRED", self.expires_at
        return (
            self.hold_id,
            self.user_id,
            self.currency,
            self.amount,
            state,
            self.captured,
            self.reference,
            self.placed_at,
            self.expires_at,
            resolved_at,
            self.obligation_id,
            self.fulfilled,
        )


def hold_view(hold: Any) -> tuple[Any, ...]:
    return (
        hold.hold_id,
        hold.user_id,
        hold.currency_code,
        hold.amount_minor,
        str(hold.state),
        hold.captured_minor,
        hold.reference,
        hold.placed_at_us,
        hold.expires_at_us,
        hold.resolved_at_us,
        hold.obligation_id,
        hold.fulfilled,
    )


@dataclass
class ModelObligation:
    obligation_id: str
    user_id: str
    currency: str
    amount_due: int
    due_at: int
    purpose: str
    reference: str
    created_at: int
    hold_id: str = ""
    paid: int = 0
    state: str = "OPEN"
    outcome: str | None = None
    days_late: int = 0
    closed_at: int | None = None

    @property
    def remaining(self) -> int:
        return self.amount_due - self.paid

    def view(self) -> tuple[Any, ...]:
        return (
            self.obligation_id,
            self.user_id,
            self.currency,
            self.amount_due,
            self.paid,
            self.due_at,
            self.purpose,
            self.reference,
            self.state,
            self.outcome,
            self.days_late,
            self.created_at,
            self.closed_at,
            self.hold_id,
        )


def obligation_view(obligation: Any) -> tuple[Any, ...]:
    return (
        obligation.obligation_id,
        obligation.user_id,
        obligation.currency_code,
        obligation.amount_due_minor,
        obligation.amount_paid_minor,
        obligation.due_at_us,
        obligation.purpose,
        obligation.reference,
        str(obligation.state),
        None if obligation.outcome is None else str(obligation.outcome),
        obligation.days_late,
        obligation.created_at_us,
        obligation.closed_at_us,
        obligation.hold_id,
    )


@dataclass
class ModelAccount:
    currency: str = ""
    capacity: int = 0
    entries: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    # True after the capacity was lowered below what was held, until held fits again: the
    # contract lets existing holds stay open then.
    over_capacity_allowed: bool = False


@dataclass
class StoredCall:
    """A mutation whose answer the ledger stores: a success or a business refusal."""

    method: str
    command: Any
    result: Any = None
    error: SesameError | None = None


class LedgerModel:
    def __init__(self) -> None:
        self.accounts: dict[str, ModelAccount] = {}
        self.holds: dict[str, ModelHold] = {}
        self.obligations: dict[str, ModelObligation] = {}
        # (user, period) -> (partner, currency, balance, paid, status, months_late)
        self.statements: dict[tuple[str, StatementPeriod], tuple[Any, ...]] = {}
        # user -> (partner, currency, amount)
        self.credit_lines: dict[str, tuple[str, str, int]] = {}
        self.entry_count = 0

    def account(self, user_id: str) -> ModelAccount:
        return self.accounts.setdefault(user_id, ModelAccount())

    def add_entries(self, user_id: str, count: int) -> None:
        self.account(user_id).entries += count
        self.entry_count += count

    def held(self, user_id: str, now: int) -> int:
        return sum(
            hold.amount
            for hold in self.holds.values()
            if hold.user_id == user_id and hold.uses_capacity(now)
        )

    def open_hold_count(self, user_id: str, now: int) -> int:
        return sum(
            1 for hold in self.holds.values() if hold.user_id == user_id and hold.uses_capacity(now)
        )

    def has_journaled_open_holds(self, user_id: str) -> bool:
        return any(h.user_id == user_id and h.state == "OPEN" for h in self.holds.values())

    def outstanding(self, user_id: str) -> int:
        return sum(
            obligation.remaining
            for obligation in self.obligations.values()
            if obligation.user_id == user_id and obligation.state == "OPEN"
        )

    def summary(self, user_id: str, now: int) -> tuple[Any, ...]:
        account = self.account(user_id)
        held = self.held(user_id, now)
        return (
            user_id,
            account.currency,
            account.capacity,
            held,
            max(0, account.capacity - held),
            self.outstanding(user_id),
            self.open_hold_count(user_id, now),
            (
                account.outcomes["on_time"],
                account.outcomes["late_up_to_30_days"],
                account.outcomes["late_over_30_days"],
                account.outcomes["defaulted"],
                account.outcomes["fulfilled"],
            ),
            account.entries,
        )


def summary_view(summary: Any) -> tuple[Any, ...]:
    outcomes = summary.outcomes
    return (
        summary.user_id,
        summary.currency_code,
        summary.waiver_capacity_minor,
        summary.held_minor,
        summary.available_minor,
        summary.outstanding_minor,
        summary.open_hold_count,
        (
            outcomes.on_time,
            outcomes.late_up_to_30_days,
            outcomes.late_over_30_days,
            outcomes.defaulted,
            outcomes.fulfilled,
        ),
        summary.last_user_sequence,
    )


def statement_key(report: commands.StatementReport) -> tuple[Any, ...]:
    assert report.balance is not None and report.amount_paid is not None
    assert report.repayment_status is not None
    return (
        report.balance.currency_code,
        report.balance.amount_minor,
        report.amount_paid.amount_minor,
        str(report.repayment_status),
        report.months_late,
    )


# ----------------------------------------------------------------------------------------------
# Strategies for statements


@st.composite
def statement_reports(draw: st.DrawFn, periods: tuple[StatementPeriod, ...], currency: str) -> Any:
    period = draw(st.sampled_from(periods))
    status = draw(st.sampled_from(list(RepaymentStatus)))
    months_late = draw(st.sampled_from([1, 2, 7])) if status is RepaymentStatus.LATE else 0
    return commands.StatementReport(
        period=period,
        balance=Money(currency, draw(st.sampled_from([-500, 0, 1_200, 5_000]))),
        amount_paid=Money(currency, draw(st.sampled_from([0, 300, 1_200]))),
        repayment_status=status,
        months_late=months_late,
    )


@st.composite
def partner_reports(draw: st.DrawFn, user_id: str) -> commands.PartnerReport:
    # One currency per report, as the ledger requires; a user's later reports may draw another,
    # which the ledger refuses.
    currency = draw(st.sampled_from(["TWD", "TWD", CURRENCY]))
    periods = draw(st.lists(st.sampled_from(PERIODS), max_size=3, unique=True))
    statements = tuple(draw(statement_reports((period,), currency)) for period in periods)
    credit_line = draw(
        st.one_of(st.none(), st.sampled_from([Money(currency, 20_000), Money(currency, 50_000)]))
    )
    return commands.PartnerReport(
        user_id=user_id,
        partner_id=draw(st.sampled_from(PARTNERS)),
        credit_line=credit_line,
        statements=statements,
    )


# ----------------------------------------------------------------------------------------------
# The state machine


class LedgerStateMachine(RuleBasedStateMachine):
    """Set `databases` (a FreshDatabases) on a subclass before running."""

    databases: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.url = self.databases.create()
        self.clock = FakeClock()
        # Sequential ids keep every run of an example identical (sweeps break ties by id).
        self.service = LedgerService(
            open_ledger_storage(self.url, pool_size=2), self.clock, ids=SequentialIds()
        )
        self.model = LedgerModel()
        self.stored: list[StoredCall] = []
        self.statement_batches: list[commands.RecordPartnerStatements] = []
        # Request ids of rejected requests that were not stored: free to use again.
        self.free_request_ids: list[str] = []
        self._request_number = 0
        # Per user, the entry count at which statements and obligations were last compared.
        self.checked_entries: dict[str, int] = {}

    def teardown(self) -> None:
        self.service.close()
        self.databases.discard(self.url)

    # Helpers ----------------------------------------------------------------------------------

    @property
    def now(self) -> int:
        return self.clock.now_us()

    def fresh_request_id(self) -> str:
        self._request_number += 1
        return f"request-{self._request_number}"

    def new_request_id(self, data: st.DataObject) -> str:
        """A request id never stored: fresh, or one an earlier rejected request used."""
        if self.free_request_ids and data.draw(st.booleans(), label="reuse rejected id"):
            return self.free_request_ids.pop(
                data.draw(st.integers(0, len(self.free_request_ids) - 1))
            )
        return self.fresh_request_id()

    def call(self, method: str, command: Any) -> tuple[Any, SesameError | None]:
        try:
            return getattr(self.service, method)(command), None
        except SesameError as error:
            return None, error

    def entries(self) -> list[Any]:
        found: list[Any] = []
        token = ""
        for _ in range(10_000):
            page = self.service.list_entries(page_size=1000, page_token=token)
            found.extend(typed.entry for typed in page.entries)
            token = page.next_page_token
            if not token:
                return found
        raise AssertionError("ListEntries never ended")

    def expect_refusal(
        self, error: SesameError | None, reasons: set[str], method: str, command: Any
    ) -> None:
        """A business refusal: FAILED_PRECONDITION with one of `reasons`, stored for replays."""
        assert isinstance(error, FailedPrecondition), f"{method} should be refused, got {error!r}"
        assert error.reason in reasons, f"{method}: {error.reason} not in {reasons}"
        self.stored.append(StoredCall(method, command, error=error))

    def expect_success(
        self, result: Any, error: SesameError | None, method: str, command: Any
    ) -> None:
        assert error is None, f"{method} should succeed, got {error!r}"
        self.stored.append(StoredCall(method, command, result=result))

    def assert_unchanged(self, entry_count_before: int) -> None:
        assert len(self.entries()) == entry_count_before == self.model.entry_count

    # Capacity and holds -----------------------------------------------------------------------

    @initialize(capacities=st.tuples(*[st.sampled_from([10, 20, 40])] * len(USERS)))
    def start_with_capacities_and_an_obligation(self, capacities: tuple[int, ...]) -> None:
        for user_id, capacity in zip(USERS, capacities, strict=True):
            command = commands.SetWaiverCapacity(
                self.fresh_request_id(), user_id, Money(CURRENCY, capacity), "initial"
            )
            result, error = self.call("set_waiver_capacity", command)
            self.expect_success(result, error, "set_waiver_capacity", command)
            account = self.model.account(user_id)
            account.currency, account.capacity = CURRENCY, capacity
            self.model.add_entries(user_id, 1)
        command = commands.CreateObligation(
            self.fresh_request_id(), USERS[-1], Money(CURRENCY, 50), self.now, "deposit", "first"
        )
        result, error = self.call("create_obligation", command)
        self.expect_success(result, error, "create_obligation", command)
        self.model.obligations[result.obligation_id] = ModelObligation(
            result.obligation_id, USERS[-1], CURRENCY, 50, self.now, "deposit", "first", self.now
        )
        self.model.add_entries(USERS[-1], 1)

    @rule(
        data=st.data(),
        user_id=users,
        capacity=st.sampled_from([10, 5, 0, 20, 40, 100]),
        currency=currencies,
    )
    def set_capacity(self, data: st.DataObject, user_id: str, capacity: int, currency: str) -> None:
        command = commands.SetWaiverCapacity(
            self.new_request_id(data), user_id, Money(currency, capacity), "review"
        )
        account = self.model.account(user_id)
        held = self.model.held(user_id, self.now)
        switches = account.currency not in ("", currency)
        # Switching currency under unexpired holds or outstanding debt would mix currencies. With
        # only expired, not yet swept holds left the contract does not say: either answer passes.
        must_refuse = switches and (held > 0 or self.model.outstanding(user_id) > 0)
        may_refuse = must_refuse or (switches and self.model.has_journaled_open_holds(user_id))
        result, error = self.call("set_waiver_capacity", command)
        if error is not None or must_refuse:
            assert may_refuse, f"capacity change refused: {error!r}"
            self.expect_refusal(error, {"CURRENCY_MISMATCH"}, "set_waiver_capacity", command)
            return
        self.expect_success(result, error, "set_waiver_capacity", command)
        account.currency, account.capacity = currency, capacity
        if capacity < held:
            account.over_capacity_allowed = True
        self.model.add_entries(user_id, 1)
        assert summary_view(result) == self.model.summary(user_id, self.now)

    @rule(
        data=st.data(),
        user_id=users,
        amount=st.sampled_from([1, 3, 5, 8, 13, 21]),
        currency=currencies,
        expires_in_s=st.sampled_from([60, 120, 600, 3_600]),
        reference=st.sampled_from(["", "order-1", "bike 7"]),
    )
    def place_hold(
        self,
        data: st.DataObject,
        user_id: str,
        amount: int,
        currency: str,
        expires_in_s: int,
        reference: str,
    ) -> None:
        self._place(self.new_request_id(data), user_id, amount, currency, expires_in_s, reference)

    @rule(
        data=st.data(),
        user_id=users,
        over_by=st.sampled_from([0, 1]),
        expires_in_s=st.sampled_from([60, 600]),
    )
    def place_a_hold_at_the_capacity_limit(
        self, data: st.DataObject, user_id: str, over_by: int, expires_in_s: int
    ) -> None:
        """Exactly what is available (must pass), or one more (must be refused)."""
        self._place_at_the_limit(data, user_id, over_by, expires_in_s)

    def _place_at_the_limit(
        self, data: st.DataObject, user_id: str, over_by: int, expires_in_s: int
    ) -> None:
        account = self.model.account(user_id)
        amount = max(1, account.capacity - self.model.held(user_id, self.now) + over_by)
        currency = account.currency or CURRENCY
        self._place(self.new_request_id(data), user_id, amount, currency, expires_in_s, "limit")

    def _place(
        self,
        request_id: str,
        user_id: str,
        amount: int,
        currency: str,
        expires_in_s: int,
        reference: str,
    ) -> None:
        command = commands.PlaceHold(
            request_id,
            user_id,
            Money(currency, amount),
            expires_in_s * SECOND_US,
            reference,
        )
        account = self.model.account(user_id)
        now = self.now
        held_before = self.model.held(user_id, now)
        result, error = self.call("place_hold", command)
        if account.currency == "":
            self.expect_refusal(error, {"INSUFFICIENT_CAPACITY"}, "place_hold", command)
            return
        if currency != account.currency:
            self.expect_refusal(error, {"CURRENCY_MISMATCH"}, "place_hold", command)
            return
        if held_before + amount > account.capacity:
            self.expect_refusal(error, {"INSUFFICIENT_CAPACITY"}, "place_hold", command)
            return
        self.expect_success(result, error, "place_hold", command)
        assert result.hold_id not in self.model.holds
        hold = ModelHold(
            hold_id=result.hold_id,
            user_id=user_id,
            currency=currency,
            amount=amount,
            reference=reference,
            placed_at=now,
            expires_at=now + expires_in_s * SECOND_US,
        )
        self.model.holds[hold.hold_id] = hold
        account.over_capacity_allowed = False
        self.model.add_entries(user_id, 1)
        assert hold_view(result) == hold.view(now)

    def _draw_hold(self, data: st.DataObject) -> ModelHold:
        """Mostly a hold that is still open (so that resolutions get through), sometimes any."""
        holds = list(self.model.holds.values())
        open_holds = [hold for hold in holds if hold.uses_capacity(self.now)]
        if open_holds and data.draw(st.integers(0, 3), label="prefer open") > 0:
            holds = open_holds
        return data.draw(st.sampled_from(holds), label="hold")

    def _resolution_refusal(self, hold: ModelHold, now: int) -> set[str] | None:
        """Why a capture or release of `hold` must be refused now, or None when it may go ahead."""
        if hold.state == "EXPIRED" or (hold.state == "OPEN" and now >= hold.expires_at):
            return {"HOLD_EXPIRED"}  # swept or not: the same reason
        if hold.state != "OPEN":
            return {"HOLD_ALREADY_RESOLVED"}
        return None

    @precondition(lambda self: self.model.holds)
    @rule(
        data=st.data(),
        with_obligation=st.booleans(),
        due_in_s=st.sampled_from([3_600, 7 * DAY_S]),
    )
    def capture_hold(self, data: st.DataObject, with_obligation: bool, due_in_s: int) -> None:
        hold = self._draw_hold(data)
        amount = data.draw(
            st.sampled_from(sorted({1, max(1, hold.amount // 2), hold.amount})), label="amount"
        )
        now = self.now
        terms = (
            commands.ObligationTerms(now + due_in_s * SECOND_US, "fee") if with_obligation else None
        )
        command = commands.CaptureHold(
            self.new_request_id(data), hold.hold_id, Money(hold.currency, amount), terms
        )
        result, error = self.call("capture_hold", command)
        refusal = self._resolution_refusal(hold, now)
        if refusal is not None:
            self.expect_refusal(error, refusal, "capture_hold", command)
            return
        self.expect_success(result, error, "capture_hold", command)
        hold.state, hold.captured, hold.resolved_at = "CAPTURED", amount, now
        entries = 1
        if with_obligation:
            assert terms is not None and result.obligation is not None
            obligation = ModelObligation(
                obligation_id=result.obligation.obligation_id,
                user_id=hold.user_id,
                currency=hold.currency,
                amount_due=amount,
                due_at=terms.due_at_us,
                purpose="fee",
                reference=hold.reference,
                created_at=now,
                hold_id=hold.hold_id,
            )
            assert obligation.obligation_id not in self.model.obligations
            self.model.obligations[obligation.obligation_id] = obligation
            hold.obligation_id = obligation.obligation_id
            self.model.account(hold.user_id).currency = hold.currency
            assert obligation_view(result.obligation) == obligation.view()
            entries += 1
        else:
            assert result.obligation is None
        self.model.add_entries(hold.user_id, entries)
        assert hold_view(result.hold) == hold.view(now)

    @precondition(lambda self: self.model.holds)
    @rule(data=st.data(), fulfilled=st.booleans())
    def release_hold(self, data: st.DataObject, fulfilled: bool) -> None:
        hold = self._draw_hold(data)
        command = commands.ReleaseHold(self.new_request_id(data), hold.hold_id, fulfilled)
        now = self.now
        result, error = self.call("release_hold", command)
        refusal = self._resolution_refusal(hold, now)
        if refusal is not None:
            self.expect_refusal(error, refusal, "release_hold", command)
            return
        self.expect_success(result, error, "release_hold", command)
        hold.state, hold.resolved_at, hold.fulfilled = "RELEASED", now, fulfilled
        if fulfilled:
            self.model.account(hold.user_id).outcomes["fulfilled"] += 1
        self.model.add_entries(hold.user_id, 1)
        assert hold_view(result) == hold.view(now)

    @rule(
        seconds=st.sampled_from([60, 61, 59, 30, 1, 119, 300, 600, 3_600]),
        then_sweep=st.sampled_from([1, None, 0, 2]),
    )
    def advance_clock(self, seconds: int, then_sweep: int | None) -> None:
        self.clock.advance(seconds=seconds)
        if then_sweep is not None:
            self._sweep(then_sweep)

    @precondition(lambda self: any(h.uses_capacity(self.now) for h in self.model.holds.values()))
    @rule(
        data=st.data(),
        offset_us=st.sampled_from([0, -1, 1]),
        then=st.sampled_from(["sweep one", "place at the limit", "nothing", "sweep"]),
    )
    def advance_to_a_hold_expiry(self, data: st.DataObject, offset_us: int, then: str) -> None:
        """To within a microsecond of an open hold's expiry, where it stops using capacity;
        then, sometimes, probe that instant with a sweep or a placement at the limit."""
        holds = [h for h in self.model.holds.values() if h.uses_capacity(self.now)]
        hold = data.draw(st.sampled_from(holds), label="hold")
        self.clock.set(max(self.now, hold.expires_at + offset_us))
        if then == "sweep":
            self._sweep(0)
        elif then == "sweep one":
            self._sweep(1)
        elif then == "place at the limit":
            self._place_at_the_limit(data, hold.user_id, over_by=0, expires_in_s=60)

    @rule(max_holds=st.sampled_from([1, 0, 2]))
    def sweep_expired_holds(self, max_holds: int) -> None:
        self._sweep(max_holds)

    def _sweep(self, max_holds: int) -> None:
        now = self.now
        due = [h for h in self.model.holds.values() if h.state == "OPEN" and h.expires_at <= now]
        limit = max_holds or 1000
        count_before = self.model.entry_count
        result = self.service.sweep_expired_holds(max_holds)
        assert result.expired_count == min(limit, len(due))
        assert result.more_remaining == (len(due) > limit)
        new_entries = self.entries()[count_before:]
        assert len(new_entries) == result.expired_count
        expired_ids = set()
        for entry in new_entries:
            assert entry.entry_type == "HOLD_EXPIRED"
            payload = json.loads(entry.payload_json)
            expired_ids.add(payload["hold_id"])
            hold = self.model.holds[payload["hold_id"]]
            assert hold.hold_id in {h.hold_id for h in due} and entry.user_id == hold.user_id
            assert payload["expired_at_us"] == hold.expires_at
        # Oldest first: no hold left unexpired may have expired before one that was swept.
        if expired_ids:
            latest_swept = max(self.model.holds[hold_id].expires_at for hold_id in expired_ids)
            assert all(h.expires_at >= latest_swept for h in due if h.hold_id not in expired_ids)
        for hold_id in expired_ids:
            hold = self.model.holds[hold_id]
            hold.state, hold.resolved_at = "EXPIRED", hold.expires_at
            self.model.add_entries(hold.user_id, 1)

    # Obligations ------------------------------------------------------------------------------

    @rule(
        data=st.data(),
        user_id=users,
        amount=st.sampled_from([1, 7, 50, 300]),
        currency=currencies,
        due_in_s=st.sampled_from([-DAY_S, 3_600, 30 * DAY_S]),
    )
    def create_obligation(
        self, data: st.DataObject, user_id: str, amount: int, currency: str, due_in_s: int
    ) -> None:
        now = self.now
        command = commands.CreateObligation(
            self.new_request_id(data),
            user_id,
            Money(currency, amount),
            now + due_in_s * SECOND_US,
            "repair",
            "order-9",
        )
        account = self.model.account(user_id)
        result, error = self.call("create_obligation", command)
        if account.currency not in ("", currency):
            self.expect_refusal(error, {"CURRENCY_MISMATCH"}, "create_obligation", command)
            return
        self.expect_success(result, error, "create_obligation", command)
        obligation = ModelObligation(
            obligation_id=result.obligation_id,
            user_id=user_id,
            currency=currency,
            amount_due=amount,
            due_at=now + due_in_s * SECOND_US,
            purpose="repair",
            reference="order-9",
            created_at=now,
        )
        assert obligation.obligation_id not in self.model.obligations
        self.model.obligations[obligation.obligation_id] = obligation
        account.currency = currency
        self.model.add_entries(user_id, 1)
        assert obligation_view(result) == obligation.view()

    def _draw_obligation(self, data: st.DataObject) -> ModelObligation:
        obligation_id = data.draw(st.sampled_from(list(self.model.obligations)), label="obligation")
        return self.model.obligations[obligation_id]

    @precondition(lambda self: self.model.obligations)
    @rule(data=st.data(), paid_earlier_s=st.sampled_from([None, 0, 3_600]))
    def record_payment(self, data: st.DataObject, paid_earlier_s: int | None) -> None:
        obligation = self._draw_obligation(data)
        # Payments are positive, and a reduction may have brought the amount due to zero.
        choices = {
            1,
            max(1, obligation.remaining),
            obligation.remaining + 1,
            max(1, obligation.amount_due),
        }
        amount = data.draw(st.sampled_from(sorted(choices)), label="amount")
        paid_at = None if paid_earlier_s is None else self.now - paid_earlier_s * SECOND_US
        self._pay(self.new_request_id(data), obligation, amount, paid_at)

    def _pay(
        self, request_id: str, obligation: ModelObligation, amount: int, paid_at: int | None
    ) -> None:
        command = commands.RecordPayment(
            request_id, obligation.obligation_id, Money(obligation.currency, amount), paid_at
        )
        result, error = self.call("record_payment", command)
        if obligation.state != "OPEN":
            self.expect_refusal(error, {"OBLIGATION_ALREADY_CLOSED"}, "record_payment", command)
            return
        if amount > obligation.remaining:
            self.expect_refusal(error, {"PAYMENT_EXCEEDS_DUE"}, "record_payment", command)
            return
        self.expect_success(result, error, "record_payment", command)
        obligation.paid += amount
        self.model.add_entries(obligation.user_id, 1)
        assert obligation_view(result) == obligation.view()

    @precondition(lambda self: self.model.obligations)
    @rule(
        data=st.data(),
        outcome=st.sampled_from(OUTCOMES),
        days_late=st.sampled_from([30, 31, 1, 400]),
        closed_earlier_s=st.sampled_from([None, 60]),
    )
    def close_obligation(
        self,
        data: st.DataObject,
        outcome: ObligationOutcome,
        days_late: int,
        closed_earlier_s: int | None,
    ) -> None:
        obligation = self._draw_obligation(data)
        closed_at = None if closed_earlier_s is None else self.now - closed_earlier_s * SECOND_US
        self._close(self.new_request_id(data), obligation, outcome, days_late, closed_at)

    @precondition(lambda self: any(o.state == "OPEN" for o in self.model.obligations.values()))
    @rule(
        data=st.data(),
        outcome=st.sampled_from(OUTCOMES),
        days_late=st.sampled_from([30, 31, 1, 400]),
        settle_by=st.sampled_from(["payment", "discount"]),
    )
    def settle_an_open_obligation(
        self, data: st.DataObject, outcome: ObligationOutcome, days_late: int, settle_by: str
    ) -> None:
        """Pays what is left, or has it waived by a reduction to what was paid (unless
        defaulting), and closes: the common ending, made likely."""
        open_ids = [o.obligation_id for o in self.model.obligations.values() if o.state == "OPEN"]
        obligation = self.model.obligations[data.draw(st.sampled_from(open_ids), label="open")]
        if outcome is not ObligationOutcome.DEFAULTED and obligation.remaining > 0:
            if settle_by == "payment":
                self._pay(self.new_request_id(data), obligation, obligation.remaining, None)
            else:
                self._reduce(self.new_request_id(data), obligation, obligation.paid, "waived")
        self._close(self.new_request_id(data), obligation, outcome, days_late, None)

    @precondition(lambda self: self.model.obligations)
    @rule(data=st.data(), reason=st.sampled_from(["discount", ""]))
    def reduce_obligation(self, data: st.DataObject, reason: str) -> None:
        """A new amount due at and around its limits: what was paid (and one below), one below
        the amount due (and the amount due itself), and between."""
        obligation = self._draw_obligation(data)
        paid, due = obligation.paid, obligation.amount_due
        choices = {paid, max(0, paid - 1), max(0, due - 1), due, (paid + due) // 2}
        amount = data.draw(st.sampled_from(sorted(choices)), label="amount due")
        self._reduce(self.new_request_id(data), obligation, amount, reason)

    def _reduce(
        self, request_id: str, obligation: ModelObligation, amount_due: int, reason: str
    ) -> None:
        command = commands.ReduceObligation(
            request_id, obligation.obligation_id, Money(obligation.currency, amount_due), reason
        )
        result, error = self.call("reduce_obligation", command)
        if obligation.state != "OPEN":
            self.expect_refusal(error, {"OBLIGATION_ALREADY_CLOSED"}, "reduce_obligation", command)
            return
        if amount_due >= obligation.amount_due:
            self.expect_refusal(error, {"AMOUNT_DUE_NOT_LOWER"}, "reduce_obligation", command)
            return
        if amount_due < obligation.paid:
            self.expect_refusal(error, {"AMOUNT_DUE_BELOW_PAID"}, "reduce_obligation", command)
            return
        self.expect_success(result, error, "reduce_obligation", command)
        obligation.amount_due = amount_due
        self.model.add_entries(obligation.user_id, 1)
        assert obligation_view(result) == obligation.view()

    def _close(
        self,
        request_id: str,
        obligation: ModelObligation,
        outcome: ObligationOutcome,
        days_late: int,
        closed_at: int | None,
    ) -> None:
        days_late = days_late if outcome is ObligationOutcome.LATE else 0
        now = self.now
        command = commands.CloseObligation(
            request_id, obligation.obligation_id, outcome, days_late, closed_at
        )
        result, error = self.call("close_obligation", command)
        if obligation.state != "OPEN":
            self.expect_refusal(error, {"OBLIGATION_ALREADY_CLOSED"}, "close_obligation", command)
            return
        if outcome is not ObligationOutcome.DEFAULTED and obligation.remaining > 0:
            self.expect_refusal(error, {"OBLIGATION_NOT_PAID_IN_FULL"}, "close_obligation", command)
            return
        self.expect_success(result, error, "close_obligation", command)
        obligation.state, obligation.outcome = "CLOSED", str(outcome)
        obligation.days_late = days_late
        obligation.closed_at = now if closed_at is None else closed_at
        counts = self.model.account(obligation.user_id).outcomes
        if outcome is ObligationOutcome.ON_TIME:
            counts["on_time"] += 1
        elif outcome is ObligationOutcome.DEFAULTED:
            counts["defaulted"] += 1
        elif days_late <= 30:
            counts["late_up_to_30_days"] += 1
        else:
            counts["late_over_30_days"] += 1
        self.model.add_entries(obligation.user_id, 1)
        assert obligation_view(result) == obligation.view()

    # Partner statements -----------------------------------------------------------------------

    def _partner_currency(self, user_id: str) -> str | None:
        line = self.model.credit_lines.get(user_id)
        if line is not None:
            return line[1]
        currencies = [value[1] for key, value in self.model.statements.items() if key[0] == user_id]
        return currencies[0] if currencies else None

    def _mixes_currencies(self, report: commands.PartnerReport) -> bool:
        recorded = self._partner_currency(report.user_id)
        reported = {report.credit_line.currency_code} if report.credit_line is not None else set()
        reported |= {statement_key(statement)[0] for statement in report.statements}
        return recorded is not None and bool(reported - {recorded})

    def _record_statements(self, command: commands.RecordPartnerStatements) -> None:
        result, error = self.call("record_partner_statements", command)
        if any(self._mixes_currencies(report) for report in command.reports):
            self.expect_refusal(error, {"CURRENCY_MISMATCH"}, "record_partner_statements", command)
            return
        self.expect_success(result, error, "record_partner_statements", command)
        self.statement_batches.append(command)
        expected = []
        for report in command.reports:
            recorded = unchanged = 0
            for statement in report.statements:
                assert statement.period is not None
                key = (report.user_id, statement.period)
                value = (report.partner_id, *statement_key(statement))
                if self.model.statements.get(key) == value:
                    unchanged += 1
                else:
                    self.model.statements[key] = value
                    recorded += 1
            credit_line_recorded = False
            if report.credit_line is not None:
                line = (
                    report.partner_id,
                    report.credit_line.currency_code,
                    report.credit_line.amount_minor,
                )
                if self.model.credit_lines.get(report.user_id) != line:
                    self.model.credit_lines[report.user_id] = line
                    credit_line_recorded = True
            self.model.add_entries(report.user_id, recorded + int(credit_line_recorded))
            expected.append((report.user_id, recorded, unchanged, credit_line_recorded))
        got = [
            (r.user_id, r.statements_recorded, r.statements_unchanged, r.credit_line_recorded)
            for r in result.results
        ]
        assert got == expected

    @rule(data=st.data(), action=st.sampled_from(["new", "resend", "correct"]))
    def record_partner_statements(self, data: st.DataObject, action: str) -> None:
        """A new batch; a batch sent before, again under a new request id (unchanged unless
        corrected since); or a correction of one recorded statement."""
        request_id = self.new_request_id(data)
        if action == "resend" and self.statement_batches:
            batch = data.draw(st.sampled_from(self.statement_batches), label="batch")
            self._record_statements(replace(batch, request_id=request_id))
        elif action == "correct" and self.model.statements:
            key = data.draw(st.sampled_from(sorted(self.model.statements, key=str)), label="key")
            partner, currency, balance, paid, status, months_late = self.model.statements[key]
            change = data.draw(st.sampled_from([-100, 1, 2_500]), label="balance change")
            corrected = commands.StatementReport(
                period=key[1],
                balance=Money(currency, balance + change),
                amount_paid=Money(currency, paid),
                repayment_status=RepaymentStatus(status),
                months_late=months_late,
            )
            report = commands.PartnerReport(key[0], partner, None, (corrected,))
            self._record_statements(commands.RecordPartnerStatements(request_id, (report,)))
        else:
            batch_users = data.draw(
                st.lists(st.sampled_from(STATEMENT_USERS), min_size=1, max_size=2, unique=True)
            )
            reports = tuple(data.draw(partner_reports(user_id)) for user_id in batch_users)
            self._record_statements(commands.RecordPartnerStatements(request_id, reports))

    # Idempotency ------------------------------------------------------------------------------

    @precondition(lambda self: self.stored)
    @rule(data=st.data(), retry=st.sampled_from(["same request", "changed", "other method"]))
    def send_a_stored_request_id_again(self, data: st.DataObject, retry: str) -> None:
        """The same request again must get the stored answer (a stored refusal included) and
        change nothing; another request under the same id must fail REQUEST_ID_REUSED."""
        call = data.draw(st.sampled_from(self.stored), label="stored call")
        count_before = self.model.entry_count
        if retry == "same request":
            result, error = self.call(call.method, call.command)
            if call.error is not None:
                assert type(error) is type(call.error), (
                    f"replay answered {error!r}, stored {call.error!r}"
                )
                assert error is not None
                assert (error.reason, error.message) == (call.error.reason, call.error.message)
            else:
                assert error is None, f"replay of a success answered {error!r}"
                assert result == call.result
            self.assert_unchanged(count_before)
            return
        if retry == "other method" and call.method != "set_waiver_capacity":
            method = "set_waiver_capacity"
            command: Any = commands.SetWaiverCapacity(
                call.command.request_id, USERS[0], Money(CURRENCY, 10), "reused id"
            )
        else:
            method, command = call.method, self._changed(call.command)
        _, error = self.call(method, command)
        assert isinstance(error, Conflict), f"reused request id answered {error!r}"
        assert error.reason == "REQUEST_ID_REUSED"
        self.assert_unchanged(count_before)

    @staticmethod
    def _changed(command: Any) -> Any:
        """The same kind of request, still valid, but asking something else."""
        match command:
            case commands.SetWaiverCapacity():
                return replace(command, reason=command.reason + " (changed)")
            case commands.PlaceHold():
                return replace(command, reference=command.reference + "x")
            case commands.CaptureHold():
                terms = (
                    None
                    if command.obligation is not None
                    else commands.ObligationTerms(DUE_TIME_MIN_US, "x")
                )
                return replace(command, obligation=terms)
            case commands.ReleaseHold():
                return replace(command, fulfilled=not command.fulfilled)
            case commands.CreateObligation():
                return replace(command, purpose=command.purpose + "x")
            case commands.RecordPayment():
                return replace(command, paid_at_us=(command.paid_at_us or 0) + 1)
            case commands.CloseObligation():
                return replace(command, closed_at_us=(command.closed_at_us or 0) + 1)
            case commands.ReduceObligation():
                return replace(command, reason=command.reason + " (changed)")
            case commands.RecordPartnerStatements():
                first = command.reports[0]
                return replace(
                    command, reports=(replace(first, partner_id=first.partner_id + "x"),)
                )
        raise AssertionError(f"unexpected command {command!r}")

    # Invalid requests -------------------------------------------------------------------------

    @rule(data=st.data())
    def send_an_invalid_request(self, data: st.DataObject) -> None:
        request_id = self.new_request_id(data)
        candidates = self._invalid_requests(request_id)
        method, command, error_type, reason = data.draw(
            st.sampled_from(candidates), label="invalid"
        )
        count_before = self.model.entry_count
        _, error = self.call(method, command)
        assert type(error) is error_type, f"{command!r} answered {error!r}"
        assert error is not None and error.reason == reason, f"{command!r}: {error.reason}"
        self.assert_unchanged(count_before)
        # Invalid and unknown-target requests are not stored: their id stays free.
        if command.request_id == request_id:
            self.free_request_ids.append(request_id)

    def _invalid_requests(self, request_id: str) -> list[tuple[str, Any, type, str]]:
        money = Money(CURRENCY, 5)
        hour = 3_600 * SECOND_US
        good_statement = commands.StatementReport(
            StatementPeriod(2025, 1), Money("TWD", 10), Money("TWD", 0), RepaymentStatus.NO_USE
        )
        place = commands.PlaceHold(request_id, "ana", money, hour)
        candidates: list[tuple[str, Any, type, str]] = [
            (
                "place_hold",
                replace(place, amount=Money(CURRENCY, 0)),
                InvalidArgument,
                "AMOUNT_NOT_POSITIVE",
            ),
            (
                "place_hold",
                replace(place, amount=Money("cny", 5)),
                InvalidArgument,
                "CURRENCY_UNKNOWN",
            ),
            ("place_hold", replace(place, amount=None), InvalidArgument, "FIELD_REQUIRED"),
            ("place_hold", replace(place, expires_in_us=0), InvalidArgument, "DURATION_INVALID"),
            (
                "place_hold",
                replace(place, expires_in_us=367 * DAY_S * SECOND_US),
                InvalidArgument,
                "DURATION_INVALID",
            ),
            ("place_hold", replace(place, request_id=""), InvalidArgument, "REQUEST_ID_REQUIRED"),
            ("place_hold", replace(place, user_id=""), InvalidArgument, "FIELD_REQUIRED"),
            ("place_hold", replace(place, user_id="ana\n"), InvalidArgument, "ID_INVALID"),
            ("place_hold", replace(place, reference="r" * 129), InvalidArgument, "TEXT_TOO_LONG"),
            (
                "set_waiver_capacity",
                commands.SetWaiverCapacity(request_id, "ana", Money(CURRENCY, -1)),
                InvalidArgument,
                "AMOUNT_NEGATIVE",
            ),
            (
                "capture_hold",
                commands.CaptureHold(request_id, "hold_unknown", money),
                NotFound,
                "HOLD_NOT_FOUND",
            ),
            (
                "release_hold",
                commands.ReleaseHold(request_id, "hold_unknown"),
                NotFound,
                "HOLD_NOT_FOUND",
            ),
            (
                "create_obligation",
                commands.CreateObligation(request_id, "bo", money, None),
                InvalidArgument,
                "FIELD_REQUIRED",
            ),
            (
                "record_payment",
                commands.RecordPayment(request_id, "obligation_unknown", money),
                NotFound,
                "OBLIGATION_NOT_FOUND",
            ),
            (
                "reduce_obligation",
                commands.ReduceObligation(request_id, "obligation_unknown", money),
                NotFound,
                "OBLIGATION_NOT_FOUND",
            ),
            (
                "reduce_obligation",
                commands.ReduceObligation(request_id, "obligation_unknown", Money(CURRENCY, -1)),
                InvalidArgument,
                "AMOUNT_NEGATIVE",
            ),
            (
                "close_obligation",
                commands.CloseObligation(
                    request_id, "obligation_unknown", ObligationOutcome.LATE, 0
                ),
                InvalidArgument,
                "DAYS_LATE_INVALID",
            ),
            (
                "close_obligation",
                commands.CloseObligation(
                    request_id, "obligation_unknown", ObligationOutcome.ON_TIME, 3
                ),
                InvalidArgument,
                "DAYS_LATE_INVALID",
            ),
            (
                "record_partner_statements",
                commands.RecordPartnerStatements(request_id, ()),
                InvalidArgument,
                "BATCH_SIZE_INVALID",
            ),
            (
                # One bad report rejects the whole batch, the good report included.
                "record_partner_statements",
                commands.RecordPartnerStatements(
                    request_id,
                    (
                        commands.PartnerReport(
                            "ana", "bank-a", Money("TWD", 30_000), (good_statement,)
                        ),
                        commands.PartnerReport(
                            "bo",
                            "bank-a",
                            None,
                            (replace(good_statement, period=StatementPeriod(2025, 13)),),
                        ),
                    ),
                ),
                InvalidArgument,
                "PERIOD_INVALID",
            ),
            (
                "record_partner_statements",
                commands.RecordPartnerStatements(
                    request_id,
                    (
                        commands.PartnerReport(
                            "ana", "bank-a", None, (good_statement, good_statement)
                        ),
                    ),
                ),
                InvalidArgument,
                "DUPLICATE_PERIOD",
            ),
            (
                "record_partner_statements",
                commands.RecordPartnerStatements(
                    request_id,
                    (
                        commands.PartnerReport("cy", "bank-a", None, (good_statement,)),
                        commands.PartnerReport("cy", "bank-b", None, ()),
                    ),
                ),
                InvalidArgument,
                "DUPLICATE_USER",
            ),
            (
                "record_partner_statements",
                commands.RecordPartnerStatements(
                    request_id,
                    (
                        commands.PartnerReport(
                            "ana",
                            "bank-a",
                            None,
                            (
                                replace(
                                    good_statement,
                                    repayment_status=RepaymentStatus.PAID_IN_FULL,
                                    months_late=2,
                                ),
                            ),
                        ),
                    ),
                ),
                InvalidArgument,
                "MONTHS_LATE_INVALID",
            ),
        ]
        for hold in self.model.holds.values():
            # Wrong whatever the hold's state: more than the hold, or another currency.
            candidates.append(
                (
                    "capture_hold",
                    commands.CaptureHold(
                        request_id, hold.hold_id, Money(hold.currency, hold.amount + 1)
                    ),
                    InvalidArgument,
                    "CAPTURE_EXCEEDS_HOLD",
                )
            )
            other = OTHER_CURRENCY if hold.currency == CURRENCY else CURRENCY
            candidates.append(
                (
                    "capture_hold",
                    commands.CaptureHold(request_id, hold.hold_id, Money(other, 1)),
                    InvalidArgument,
                    "CURRENCY_MISMATCH",
                )
            )
            candidates.append(
                (
                    "capture_hold",
                    commands.CaptureHold(
                        request_id,
                        hold.hold_id,
                        Money(hold.currency, 1),
                        commands.ObligationTerms(None),
                    ),
                    InvalidArgument,
                    "FIELD_REQUIRED",
                )
            )
            break
        for obligation in self.model.obligations.values():
            other = OTHER_CURRENCY if obligation.currency == CURRENCY else CURRENCY
            candidates.append(
                (
                    "record_payment",
                    commands.RecordPayment(request_id, obligation.obligation_id, Money(other, 1)),
                    InvalidArgument,
                    "CURRENCY_MISMATCH",
                )
            )
            candidates.append(
                (
                    "close_obligation",
                    commands.CloseObligation(request_id, obligation.obligation_id, None),
                    InvalidArgument,
                    "FIELD_REQUIRED",
                )
            )
            # Wrong whatever the obligation's state or amounts: its currency never changes.
            candidates.append(
                (
                    "reduce_obligation",
                    commands.ReduceObligation(
                        request_id, obligation.obligation_id, Money(other, 0)
                    ),
                    InvalidArgument,
                    "CURRENCY_MISMATCH",
                )
            )
            break
        return candidates

    # Invariants -------------------------------------------------------------------------------

    @invariant()
    def the_journal_is_exactly_what_the_model_predicts(self) -> None:
        entries = self.entries()
        assert len(entries) == self.model.entry_count, "the journal holds unexpected entries"
        assert [e.global_sequence for e in entries] == list(range(1, len(entries) + 1))
        user_sequences: Counter[str] = Counter()
        # Replay the journal on its own: capacity in force and open holds, per user.
        capacity: dict[str, int] = {}
        open_holds: dict[str, dict[str, tuple[int, int]]] = {}
        amounts: dict[str, int] = {}
        resolved: set[str] = set()
        for entry in entries:
            user_sequences[entry.user_id] += 1
            assert entry.user_sequence == user_sequences[entry.user_id]
            payload = json.loads(entry.payload_json)
            holds = open_holds.setdefault(entry.user_id, {})
            match entry.entry_type:
                case "CAPACITY_SET":
                    capacity[entry.user_id] = payload["capacity_minor"]
                case "HOLD_PLACED":
                    placed_at = payload["placed_at_us"]
                    in_use = sum(a for a, expires_at in holds.values() if expires_at > placed_at)
                    assert in_use + payload["amount_minor"] <= capacity.get(entry.user_id, 0), (
                        f"hold {payload['hold_id']} took {entry.user_id} above capacity"
                    )
                    holds[payload["hold_id"]] = (payload["amount_minor"], payload["expires_at_us"])
                    amounts[payload["hold_id"]] = payload["amount_minor"]
                case "HOLD_CAPTURED" | "HOLD_RELEASED" | "HOLD_EXPIRED":
                    hold_id = payload["hold_id"]
                    assert hold_id not in resolved, f"hold {hold_id} resolved twice"
                    assert hold_id in holds, f"hold {hold_id} resolved but never placed"
                    resolved.add(hold_id)
                    del holds[hold_id]
                    if entry.entry_type == "HOLD_CAPTURED":
                        assert 0 < payload["captured_minor"] <= amounts[hold_id]
                        assert (
                            payload["captured_minor"] + payload["released_minor"]
                            == amounts[hold_id]
                        )
        for user_id, account in self.model.accounts.items():
            assert user_sequences[user_id] == account.entries, user_id

    @invariant()
    def accounts_holds_obligations_and_statements_equal_the_model(self) -> None:
        now = self.now
        for user_id in STATEMENT_USERS:
            summary = self.service.get_account_summary(user_id)
            assert summary_view(summary) == self.model.summary(user_id, now), user_id
            account = self.model.account(user_id)
            if summary.held_minor > summary.waiver_capacity_minor:
                assert account.over_capacity_allowed, f"{user_id} holds more than the capacity"
            else:
                account.over_capacity_allowed = False
            # Statements and obligations change only with the user's own entries (and a stray
            # change without one fails verify_chain), so their read is skipped when none came.
            if self.checked_entries.get(user_id) == account.entries:
                continue
            self.checked_entries[user_id] = account.entries
            history = self.service.get_credit_history(user_id, max_statements=24)
            statements = {
                s.period: (
                    s.partner_id,
                    s.currency_code,
                    s.balance_minor,
                    s.amount_paid_minor,
                    str(s.repayment_status),
                    s.months_late,
                )
                for s in history.statements
            }
            expected = {
                period: value
                for (user, period), value in self.model.statements.items()
                if user == user_id
            }
            assert statements == expected, user_id
            line = history.credit_line
            got_line = (
                None if line is None else (line.partner_id, line.currency_code, line.amount_minor)
            )
            assert got_line == self.model.credit_lines.get(user_id), user_id
            obligations = {o.obligation_id: obligation_view(o) for o in history.obligations}
            assert obligations == {
                o.obligation_id: o.view()
                for o in self.model.obligations.values()
                if o.user_id == user_id
            }, user_id
        for hold in self.model.holds.values():
            assert hold_view(self.service.get_hold(hold.hold_id)) == hold.view(now)
        # GetObligation reads the same rows as the history; one look-up keeps it honest.
        for obligation in list(self.model.obligations.values())[-1:]:
            got = self.service.get_obligation(obligation.obligation_id)
            assert obligation_view(got) == obligation.view()

    @invariant()
    def every_chain_and_projection_verifies(self) -> None:
        report = self.service.verify_chain()
        assert report.intact, report.first_mismatch
        assert report.entries_checked == self.model.entry_count


# ----------------------------------------------------------------------------------------------
# The tests

# (max_examples, stateful_step_count) per database.
QUICK = {"sqlite": (40, 30), "postgresql": (8, 25)}
THOROUGH = {"sqlite": (200, 50), "postgresql": (60, 40)}


def _run(databases: Any, max_examples: int, steps: int) -> None:
    machine = type(
        f"LedgerStateMachine_{databases.kind}", (LedgerStateMachine,), {"databases": databases}
    )
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def test_the_ledger_behaves_like_its_model(fresh_ledger_databases: Any) -> None:
    _run(fresh_ledger_databases, *QUICK[fresh_ledger_databases.kind])


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_ledger_behaves_like_its_model_over_a_long_search(fresh_ledger_databases: Any) -> None:
    _run(fresh_ledger_databases, *THOROUGH[fresh_ledger_databases.kind])
