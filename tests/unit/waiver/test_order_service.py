"""The order use cases over an in-memory ledger and score service and a real SQLite database:
decisions, idempotency, the saga with the ledger, the sweeper and the recovery pass."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.common.deadline import Deadline
from services.common.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from services.waiver.domain import commands
from services.waiver.domain.decision import WaiverOutcome
from services.waiver.domain.order import OrderState
from services.waiver.domain.policy import ScoringUnavailableAction
from services.waiver.service.capacity import CapacityKeeper
from services.waiver.service.orders import OrderService
from services.waiver.service.policies import PolicyService
from services.waiver.service.ports import LedgerUnavailable
from services.waiver.storage.migrate import upgrade
from services.waiver.storage.sql_storage import SqlWaiverStorage
from tests.support.clock import FakeClock
from tests.support.ledger import FakeLedger
from tests.support.scores import FakeScores

from .conftest import DAY_US, HOUR_US, YUAN, make_policy, make_request, make_score

LEASE_S = 30.0
UNDO_S = 60.0
NO_DEADLINE = Deadline.none()


class WallClock:
    def __init__(self) -> None:
        self.now_us = 1_000_000_000_000

    def __call__(self) -> int:
        return self.now_us

    def advance(self, seconds: float) -> None:
        self.now_us += round(seconds * 1_000_000)


@dataclass
class Waiver:
    orders: OrderService
    ledger: FakeLedger
    scores: FakeScores
    clock: FakeClock
    wall: WallClock
    storage: SqlWaiverStorage

    def create(self, request_id="r-create", **changes):
        start_us = self.clock.now_us()
        values = {"start_us": start_us, "end_us": start_us + 2 * HOUR_US, **changes}
        return self.orders.create_order(
            commands.CreateOrder(request_id, make_request(**values)), NO_DEADLINE
        )

    def complete(self, total_minor, request_id="r-complete", out_order_no="o-1"):
        return self.orders.complete_order(
            commands.CompleteOrder(
                request_id, "m-1", out_order_no, total_minor, self.clock.now_us(), (), ()
            ),
            NO_DEADLINE,
        )

    def pay(self, amount_minor, request_id="r-pay", out_order_no="o-1"):
        return self.orders.sync_payment(
            commands.SyncPayment(
                request_id, "m-1", out_order_no, amount_minor, self.clock.now_us()
            ),
            NO_DEADLINE,
        )

    def cancel(self, request_id="r-cancel", out_order_no="o-1"):
        return self.orders.cancel_order(
            commands.CancelOrder(request_id, "m-1", out_order_no, "not needed"), NO_DEADLINE
        )


@pytest.fixture
def waiver(tmp_path):
    url = f"sqlite:///{tmp_path / 'waiver.db'}"
    upgrade(url)
    storage = SqlWaiverStorage(url)
    clock, wall = FakeClock(), WallClock()
    ledger, scores = FakeLedger(), FakeScores({"u-1": make_score(score=600, pd=0.05)})
    policies = PolicyService(storage, clock, "CNY")
    policies.seed(
        [
            make_policy(),
            make_policy(
                scenario_id="car",
                max_waiver_minor=8000 * YUAN,
                expected_loss_budget_minor=200 * YUAN,
                max_service_duration_us=30 * DAY_US,
                scoring_unavailable_action=ScoringUnavailableAction.FULL_DEPOSIT,
            ),
        ]
    )
    orders = OrderService(
        storage,
        ledger,
        scores,
        CapacityKeeper(storage, ledger, YUAN),
        policies,
        clock,
        currency_code="CNY",
        unit_minor=YUAN,
        step_lease_s=LEASE_S,
        create_undo_after_s=UNDO_S,
        wall_clock_us=wall,
    )
    yield Waiver(orders, ledger, scores, clock, wall, storage)
    storage.close()


def open_holds(ledger: FakeLedger) -> list[int]:
    return [hold.amount_minor for hold in ledger.holds.values() if hold.state == "open"]


def test_a_bike_order_from_creation_to_payment_records_every_step_in_the_ledger(waiver):
    created = waiver.create()
    assert created.order.decision.outcome is WaiverOutcome.FULL
    assert created.state is OrderState.DOING
    assert open_holds(waiver.ledger) == [99 * YUAN]
    # Capacity follows the score's band: 600-649 allows 6,000 yuan.
    assert waiver.ledger.capacities["u-1"] == 6000 * YUAN

    completed = waiver.complete(30 * YUAN)
    assert completed.state is OrderState.AWAITING_PAYMENT
    (hold,) = waiver.ledger.holds.values()
    assert (hold.state, hold.captured_minor) == ("captured", 30 * YUAN)

    paid = waiver.pay(30 * YUAN)
    assert paid.state is OrderState.DONE
    (obligation,) = waiver.ledger.obligations.values()
    assert (obligation.paid_minor, obligation.outcome.name) == (30 * YUAN, "ON_TIME")


def test_creating_again_with_the_same_parameters_returns_the_order_and_holds_once(waiver):
    first = waiver.create()
    again = waiver.create(request_id="another-request-id")

    assert again.order == first.order
    assert open_holds(waiver.ledger) == [99 * YUAN]


def test_creating_again_with_other_parameters_is_already_exists(waiver):
    waiver.create()

    with pytest.raises(AlreadyExists) as refused:
        waiver.create(request_id="r-2", risk_minor=98 * YUAN)
    assert refused.value.reason == "ORDER_ALREADY_EXISTS"


def test_a_request_id_used_for_another_order_is_refused(waiver):
    waiver.create()

    with pytest.raises(Conflict) as refused:
        waiver.create(out_order_no="o-2")
    assert refused.value.reason == "REQUEST_ID_REUSED"


def test_capacity_is_set_once_per_band_change(waiver):
    waiver.create()
    waiver.create(request_id="r-2", out_order_no="o-2")
    assert len(waiver.ledger.capacity_changes) == 1

    waiver.scores.by_user["u-1"] = make_score(score=520, pd=0.12)
    waiver.create(request_id="r-3", out_order_no="o-3")
    waiver.scores.by_user["u-1"] = make_score(score=610, pd=0.05)
    waiver.create(request_id="r-4", out_order_no="o-4")

    assert len(waiver.ledger.capacity_changes) == 3
    assert len(set(waiver.ledger.capacity_changes)) == 3, "a return to a band is a new change"
    assert waiver.ledger.capacities["u-1"] == 6000 * YUAN


def test_a_lower_score_lowers_capacity_for_new_orders_and_leaves_holds_placed(waiver):
    waiver.create(scenario_id="car", risk_minor=3000 * YUAN, end_us=waiver.clock.now_us() + DAY_US)
    waiver.scores.by_user["u-1"] = make_score(score=460, pd=0.05)

    second = waiver.create(request_id="r-2", out_order_no="o-2")

    assert open_holds(waiver.ledger)[0] == 3000 * YUAN, "the earlier hold stays"
    assert waiver.ledger.capacities["u-1"] == 500 * YUAN
    assert second.order.decision.outcome is WaiverOutcome.DENIED
    assert second.order.decision.reasons[0].code == "CAPACITY_IN_USE"


def test_concurrent_orders_never_exceed_the_capacity_a_refused_hold_is_decided_again(waiver):
    waiver.scores.by_user["u-1"] = make_score(score=470, pd=0.01)  # capacity 500 yuan
    waiver.create(scenario_id="car", risk_minor=450 * YUAN, end_us=waiver.clock.now_us() + DAY_US)

    second = waiver.create(request_id="r-2", out_order_no="o-2")

    assert second.order.decision.outcome is WaiverOutcome.PARTIAL
    assert second.order.decision.waived_minor == 50 * YUAN
    assert sum(open_holds(waiver.ledger)) == 500 * YUAN


def test_without_a_score_an_enjoy_first_scenario_refuses_the_order_and_writes_nothing(waiver):
    waiver.scores.reachable = False

    with pytest.raises(Unavailable) as refused:
        waiver.create()

    assert refused.value.reason == "SCORE_UNAVAILABLE"
    assert waiver.ledger.answered == {}
    with pytest.raises(NotFound):
        waiver.orders.get_order("m-1", "o-1")


def test_a_retry_of_a_created_order_answers_it_while_the_score_service_is_down(waiver):
    # A merchant retrying after a lost answer gets the order it made, score or no score.
    made = waiver.create()
    waiver.scores.reachable = False

    again = waiver.create()

    assert again == made
    assert sum(open_holds(waiver.ledger)) == 99 * YUAN


@pytest.mark.parametrize("reason", ["CONSENT_MISSING", "CONSENT_WITHDRAWN"])
@pytest.mark.parametrize("scenario_id", ["bike", "car"])
def test_a_user_without_consent_is_refused_and_nothing_is_written_whatever_the_fallback(
    waiver, reason, scenario_id
):
    # The bike scenario refuses orders without a score, the car scenario asks for the whole
    # deposit: neither fallback applies to a user who did not consent.
    changes = (
        {}
        if scenario_id == "bike"
        else {
            "scenario_id": "car",
            "risk_minor": 450 * YUAN,
            "end_us": waiver.clock.now_us() + DAY_US,
        }
    )
    waiver.scores.refused["u-1"] = reason

    with pytest.raises(FailedPrecondition) as refused:
        waiver.create(**changes)

    assert refused.value.reason == reason
    assert waiver.ledger.answered == {}
    with pytest.raises(NotFound):
        waiver.orders.get_order("m-1", "o-1")
    # Once the user consents, the same request creates the order.
    del waiver.scores.refused["u-1"]
    made = waiver.create(**changes)
    assert made.order.request.user_id == "u-1"


def test_without_a_score_a_waive_first_scenario_asks_for_the_whole_deposit(waiver):
    waiver.scores.reachable = False

    made = waiver.create(
        scenario_id="car", risk_minor=3000 * YUAN, end_us=waiver.clock.now_us() + DAY_US
    )

    assert made.state is OrderState.DENIED
    assert made.order.decision.reasons[0].code == "SCORING_UNAVAILABLE"
    assert open_holds(waiver.ledger) == []


def test_an_unreachable_ledger_is_unavailable_and_a_retry_finishes_the_order_once(waiver):
    waiver.ledger.reachable = False
    with pytest.raises(Unavailable) as refused:
        waiver.create()
    assert refused.value.reason == "LEDGER_UNAVAILABLE"
    with pytest.raises(NotFound):
        waiver.orders.get_order("m-1", "o-1")

    waiver.ledger.reachable = True
    made = waiver.create()

    assert made.order.decision.outcome is WaiverOutcome.FULL
    assert open_holds(waiver.ledger) == [99 * YUAN]


def test_a_creation_nobody_confirms_is_undone_and_its_hold_released(waiver):
    # The ledger places the hold but its answer is lost on the way back.
    ledger = waiver.ledger
    original_place = ledger.place_hold

    def place_then_lose_the_answer(*arguments, **keywords):
        original_place(*arguments, **keywords)
        raise LedgerUnavailable("the answer was lost", reason="LEDGER_UNAVAILABLE")

    ledger.place_hold = place_then_lose_the_answer  # type: ignore[method-assign]
    with pytest.raises(Unavailable):
        waiver.create()
    ledger.place_hold = original_place  # type: ignore[method-assign]
    assert open_holds(ledger) == [99 * YUAN]

    waiver.wall.advance(LEASE_S + 1)
    assert waiver.orders.recover() == 0, "its merchant may still retry"
    waiver.wall.advance(UNDO_S)
    assert waiver.orders.recover() == 1

    assert open_holds(ledger) == []
    with pytest.raises(NotFound):
        waiver.orders.get_order("m-1", "o-1")
    again = waiver.create()
    assert again.order.decision.outcome is WaiverOutcome.FULL
    assert open_holds(ledger) == [99 * YUAN], "a new hold under a new request id"


def test_a_step_cut_short_is_finished_by_its_retry(waiver):
    waiver.create()
    waiver.ledger.reachable = False
    with pytest.raises(Unavailable):
        waiver.complete(30 * YUAN)
    waiver.ledger.reachable = True

    with pytest.raises(Conflict) as busy:
        waiver.cancel()
    assert busy.value.reason == "ORDER_BUSY"
    finished = waiver.complete(30 * YUAN)

    assert finished.state is OrderState.AWAITING_PAYMENT
    assert [hold.state for hold in waiver.ledger.holds.values()] == ["captured"]


def test_a_step_nobody_retries_is_finished_by_the_recovery_pass(waiver):
    waiver.create()
    waiver.ledger.reachable = False
    with pytest.raises(Unavailable):
        waiver.cancel()
    waiver.ledger.reachable = True

    waiver.wall.advance(LEASE_S + 1)
    assert waiver.orders.recover() == 1

    assert waiver.orders.get_order("m-1", "o-1").state is OrderState.REVOKED
    assert open_holds(waiver.ledger) == []


def test_a_refusal_is_replayed_to_a_retry_of_the_same_request(waiver):
    waiver.create()
    waiver.complete(0)  # DONE

    for _ in range(2):
        with pytest.raises(FailedPrecondition) as refused:
            waiver.cancel()
        assert refused.value.reason == "ORDER_STATE_INVALID"
        assert refused.value.metadata == {"state": "ORDER_STATE_DONE"}


def test_the_same_request_id_with_another_request_is_refused(waiver):
    waiver.create()
    waiver.complete(30 * YUAN)

    with pytest.raises(Conflict) as refused:
        waiver.complete(20 * YUAN)
    assert refused.value.reason == "REQUEST_ID_REUSED"


def test_a_total_above_the_risk_amount_is_invalid(waiver):
    waiver.create()

    with pytest.raises(InvalidArgument) as refused:
        waiver.complete(100 * YUAN)
    assert refused.value.reason == "TOTAL_EXCEEDS_RISK_AMOUNT"


def test_an_order_never_returned_is_breached_and_the_default_recorded(waiver):
    made = waiver.create()
    policy = make_policy()
    breach_us = made.order.request.end_us + policy.grace_period_us + policy.breach_period_us

    waiver.clock.set(made.order.request.end_us + policy.grace_period_us)
    assert waiver.orders.get_order("m-1", "o-1").state is OrderState.OVERDUE
    waiver.clock.set(breach_us)
    assert waiver.orders.get_order("m-1", "o-1").state is OrderState.BREACHED, "shown at once"
    assert waiver.orders.sweep() == 1

    (hold,) = waiver.ledger.holds.values()
    assert (hold.state, hold.captured_minor) == ("captured", 99 * YUAN)
    (obligation,) = waiver.ledger.obligations.values()
    assert obligation.outcome.name == "DEFAULTED"
    assert waiver.orders.sweep() == 0


def test_the_sweeper_writes_each_time_driven_change(waiver):
    waiver.create(
        start_us=waiver.clock.now_us() + HOUR_US, end_us=waiver.clock.now_us() + 2 * HOUR_US
    )
    listed = waiver.orders.list_orders("m-1", OrderState.CREATED, None, 10)
    assert len(listed.orders) == 1

    waiver.clock.advance(seconds=3600)
    assert waiver.orders.sweep() == 1
    assert len(waiver.orders.list_orders("m-1", OrderState.DOING, None, 10).orders) == 1


def test_orders_are_listed_newest_first_page_by_page(waiver):
    for number in range(5):
        waiver.create(request_id=f"r-{number}", out_order_no=f"o-{number}")
        waiver.clock.advance(seconds=1)

    first = waiver.orders.list_orders("m-1", None, None, 2)
    second = waiver.orders.list_orders("m-1", None, first.next_after, 2)
    third = waiver.orders.list_orders("m-1", None, second.next_after, 2)

    listed = [
        view.order.request.out_order_no for page in (first, second, third) for view in page.orders
    ]
    assert listed == ["o-4", "o-3", "o-2", "o-1", "o-0"]
    assert third.next_after is None


def _lose_the_answers_of_placements(ledger: FakeLedger) -> None:
    """The ledger places holds but its answers are lost on the way back."""
    original_place = ledger.place_hold

    def place_then_lose_the_answer(*arguments, **keywords):
        original_place(*arguments, **keywords)
        raise LedgerUnavailable("the answer was lost", reason="LEDGER_UNAVAILABLE")

    ledger.place_hold = place_then_lose_the_answer  # type: ignore[method-assign]


def test_a_retry_that_arrives_while_its_creation_is_undone_never_keeps_a_released_hold(waiver):
    ledger = waiver.ledger
    original_place = ledger.place_hold
    _lose_the_answers_of_placements(ledger)
    with pytest.raises(Unavailable):
        waiver.create()
    waiver.wall.advance(UNDO_S + 1)
    # The merchant's retry arrives while the recovery pass is undoing the creation: the pass
    # is at its first ledger call when the retry runs.
    retries = []

    def retry_during_the_undo(*arguments, **keywords):
        ledger.place_hold = original_place  # type: ignore[method-assign]
        try:
            retries.append(waiver.create())
        except Conflict as busy:
            retries.append(busy.reason)
        return original_place(*arguments, **keywords)

    ledger.place_hold = retry_during_the_undo  # type: ignore[method-assign]
    waiver.orders.recover()
    ledger.place_hold = original_place  # type: ignore[method-assign]
    assert len(retries) == 1

    settled = waiver.create()  # the merchant retries until it has an answer

    assert settled.state is OrderState.DOING
    assert open_holds(ledger) == [99 * YUAN], "the order it was told of holds its credit"


def test_a_retry_after_an_undo_cut_short_never_keeps_the_released_hold(waiver):
    ledger = waiver.ledger
    original_place, original_release = ledger.place_hold, ledger.release_hold
    _lose_the_answers_of_placements(ledger)
    with pytest.raises(Unavailable):
        waiver.create()
    ledger.place_hold = original_place  # type: ignore[method-assign]
    waiver.wall.advance(UNDO_S + 1)

    def release_then_crash(*arguments, **keywords):
        original_release(*arguments, **keywords)
        raise LedgerUnavailable("the process died with the answer", reason="LEDGER_UNAVAILABLE")

    ledger.release_hold = release_then_crash  # type: ignore[method-assign]
    with pytest.raises(LedgerUnavailable):
        waiver.orders.recover()  # the pass dies after the release, before forgetting the order
    ledger.release_hold = original_release  # type: ignore[method-assign]

    with pytest.raises(Conflict) as busy:
        waiver.create()  # the merchant's retry must not settle on the released hold
    assert busy.value.reason == "ORDER_BUSY"
    assert waiver.orders.recover() == 1
    settled = waiver.create()

    assert settled.state is OrderState.DOING
    assert open_holds(ledger) == [99 * YUAN], "a new hold under a new request id"


def test_an_order_the_ledger_refuses_does_not_stop_the_recovery_of_the_others(waiver):
    waiver.create()
    waiver.create(request_id="r-2", out_order_no="o-2")
    first_hold = next(iter(waiver.ledger.holds.values()))
    waiver.ledger.reachable = False
    with pytest.raises(Unavailable):
        waiver.cancel()
    waiver.wall.advance(1)
    with pytest.raises(Unavailable):
        waiver.cancel(request_id="r-cancel-2", out_order_no="o-2")
    waiver.ledger.reachable = True
    # The first order's hold was resolved behind the waiver's back: the ledger refuses its
    # release, however often it is replayed.
    first_hold.state = "captured"

    waiver.wall.advance(LEASE_S + 1)
    assert waiver.orders.recover() == 1

    assert waiver.orders.get_order("m-1", "o-2").state is OrderState.REVOKED
    assert waiver.orders.get_order("m-1", "o-1").state is OrderState.DOING, "still pending"
