"""A merchant's view: orders through gRPC against a real ledger and score service, on SQLite and
PostgreSQL, with every step visible in the ledger."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
from sesame.ledger.v1 import ledger_service_pb2 as ledger_pb
from sesame.waiver.v1 import waiver_service_pb2 as pb

from services.common.deadline import Deadline
from services.common.grpc_errors import error_details
from services.datasets import taiwan
from services.waiver.adapters.ledger_client import LedgerClient
from services.waiver.service.ports import LedgerRefused

from .conftest import (
    CALL_TIMEOUT_S,
    HOUR_US,
    MERCHANT_ID,
    MIDDLING,
    RELIABLE,
    RISKY,
    TAIWAN_SAMPLE,
    timestamp,
    yuan,
)

# How long the ledger's entry stream may take to carry a withdrawal to the score service.
INVALIDATION_WAIT_S = 5.0


def order_no() -> str:
    return f"o-{uuid.uuid4().hex[:12]}"


def account(waiver, user_id):
    return waiver.suite.ledger.GetAccountSummary(
        ledger_pb.GetAccountSummaryRequest(user_id=user_id), timeout=CALL_TIMEOUT_S
    ).account


def test_a_bike_order_from_creation_to_payment(waiver):
    user = waiver.suite.new_user(RELIABLE)
    number = order_no()

    created = waiver.create(number, user)
    assert created.decision.outcome == pb.WAIVER_OUTCOME_FULL
    assert created.state == pb.ORDER_STATE_DOING
    assert account(waiver, user).held.amount_minor == 9900

    now_us = waiver.suite.clock.now_us()
    completed = waiver.stub.CompleteOrder(
        pb.CompleteOrderRequest(
            request_id=f"complete-{number}",
            merchant_id=MERCHANT_ID,
            out_order_no=number,
            post_payments=[pb.LineItem(name="ride", amount=yuan(1.5), count=2)],
            total_amount=yuan(3),
            end_time=timestamp(now_us),
        ),
        timeout=CALL_TIMEOUT_S,
    ).order
    assert completed.state == pb.ORDER_STATE_AWAITING_PAYMENT
    assert completed.credit_charge_amount.amount_minor == 300
    assert account(waiver, user).outstanding.amount_minor == 300

    paid = waiver.stub.SyncPayment(
        pb.SyncPaymentRequest(
            request_id=f"pay-{number}",
            merchant_id=MERCHANT_ID,
            out_order_no=number,
            amount=yuan(3),
            paid_time=timestamp(now_us),
        ),
        timeout=CALL_TIMEOUT_S,
    ).order
    assert paid.state == pb.ORDER_STATE_DONE
    ledger_account = account(waiver, user)
    assert ledger_account.outcomes.on_time == 1
    assert ledger_account.held.amount_minor == 0
    assert ledger_account.outstanding.amount_minor == 0


def ledger_entry_types(waiver, user_id):
    entries = waiver.suite.ledger.ListEntries(
        ledger_pb.ListEntriesRequest(user_id=user_id), timeout=CALL_TIMEOUT_S
    ).entries
    return [ledger_pb.EntryType.Name(entry.type) for entry in entries]


def refused_create(waiver, number, user):
    with pytest.raises(grpc.RpcError) as refused:
        waiver.create(number, user)
    return refused.value.code(), error_details(refused.value).reason


def test_an_order_for_a_user_who_never_consented_is_refused_and_writes_nothing(waiver):
    user = waiver.suite.new_user(RELIABLE, consents=False)
    number = order_no()

    assert refused_create(waiver, number, user) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CONSENT_MISSING",
    )

    with pytest.raises(grpc.RpcError) as missing:
        waiver.stub.GetOrder(
            pb.GetOrderRequest(merchant_id=MERCHANT_ID, out_order_no=number),
            timeout=CALL_TIMEOUT_S,
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    # The ledger holds the partner's statements and nothing the waiver wrote: no capacity, no hold.
    assert set(ledger_entry_types(waiver, user)) == {
        "ENTRY_TYPE_CREDIT_LINE_REPORTED",
        "ENTRY_TYPE_STATEMENT_REPORTED",
    }
    # Once the user consents, the same request creates the order.
    waiver.suite.record_consent(user, ledger_pb.CONSENT_STATE_GRANTED)
    assert waiver.create(number, user).decision.outcome == pb.WAIVER_OUTCOME_FULL


def test_an_order_after_the_user_withdrew_consent_is_refused_and_writes_nothing(waiver):
    user = waiver.suite.new_user(RELIABLE)
    assert waiver.create(order_no(), user).decision.outcome == pb.WAIVER_OUTCOME_FULL
    entries_before = ledger_entry_types(waiver, user)

    waiver.suite.record_consent(user, ledger_pb.CONSENT_STATE_WITHDRAWN)

    # The withdrawal reaches the score service's cache through the ledger's entry stream.
    number = order_no()
    answer = refused_create_or_order(waiver, number, user)
    deadline = time.monotonic() + INVALIDATION_WAIT_S
    while answer[0] == grpc.StatusCode.OK and time.monotonic() < deadline:
        time.sleep(0.05)
        number = order_no()
        answer = refused_create_or_order(waiver, number, user)
    assert answer == (grpc.StatusCode.FAILED_PRECONDITION, "CONSENT_WITHDRAWN")
    with pytest.raises(grpc.RpcError) as missing:
        waiver.stub.GetOrder(
            pb.GetOrderRequest(merchant_id=MERCHANT_ID, out_order_no=number),
            timeout=CALL_TIMEOUT_S,
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    entries_after = ledger_entry_types(waiver, user)
    assert entries_after[len(entries_before) :][:1] == ["ENTRY_TYPE_CONSENT_WITHDRAWN"]


def refused_create_or_order(waiver, number, user):
    try:
        waiver.create(number, user)
    except grpc.RpcError as error:
        return error.code(), error_details(error).reason
    return grpc.StatusCode.OK, ""


def test_a_discount_after_completion_lowers_the_obligation_in_the_ledger(waiver):
    user = waiver.suite.new_user(RELIABLE)
    number = order_no()
    waiver.create(number, user)
    key = {"merchant_id": MERCHANT_ID, "out_order_no": number}
    now_us = waiver.suite.clock.now_us()
    waiver.stub.CompleteOrder(
        pb.CompleteOrderRequest(
            request_id=f"complete-{number}",
            total_amount=yuan(3),
            end_time=timestamp(now_us),
            **key,
        ),
        timeout=CALL_TIMEOUT_S,
    )

    def modify(step: str, total_yuan: float) -> pb.Order:
        request = pb.ModifyOrderRequest(
            request_id=f"{step}-{number}",
            total_amount=yuan(total_yuan),
            reason="merchant discount",
            **key,
        )
        return waiver.stub.ModifyOrder(request, timeout=CALL_TIMEOUT_S).order

    lowered = modify("modify", 2)
    assert lowered.state == pb.ORDER_STATE_AWAITING_PAYMENT
    assert lowered.credit_charge_amount.amount_minor == 200
    assert account(waiver, user).outstanding.amount_minor == 200
    waiver.stub.SyncPayment(
        pb.SyncPaymentRequest(
            request_id=f"pay-{number}", amount=yuan(1), paid_time=timestamp(now_us), **key
        ),
        timeout=CALL_TIMEOUT_S,
    )

    # Lowered to what was paid: nothing is left due, and the obligation closes on time.
    done = modify("modify-again", 1)

    assert done.state == pb.ORDER_STATE_DONE
    ledger_account = account(waiver, user)
    assert ledger_account.outstanding.amount_minor == 0
    assert ledger_account.outcomes.on_time == 1
    verified = waiver.suite.ledger.VerifyChain(
        ledger_pb.VerifyChainRequest(user_id=user), timeout=CALL_TIMEOUT_S
    )
    assert verified.intact


def test_the_ledger_client_lowers_an_obligation_and_names_the_ledgers_refusals(suite):
    created = ledger_pb.CreateObligationRequest(
        request_id=f"obligation-{uuid.uuid4().hex[:12]}",
        user_id=f"u-{uuid.uuid4().hex[:10]}",
        amount_due=yuan(30),
        due_time=timestamp(suite.clock.now_us() + HOUR_US),
    )
    response = suite.ledger.CreateObligation(created, timeout=CALL_TIMEOUT_S)
    obligation_id = response.obligation.obligation_id
    with grpc.insecure_channel(suite.ledger_address) as channel:
        client = LedgerClient(channel, "CNY")

        def adjust(step: str, amount_due_minor: int, obligation: str = obligation_id) -> None:
            request_id = f"{step}-{created.request_id}"
            client.adjust_obligation(
                request_id, obligation, amount_due_minor, "why", Deadline.none()
            )

        adjust("adjust-1", 2_000)
        adjust("adjust-1", 2_000)  # a retry: the stored answer, nothing lowered twice
        refusals = []
        for step, amount_due_minor, obligation in (
            ("adjust-2", 2_000, obligation_id),
            ("adjust-3", -1, obligation_id),
            ("adjust-4", 1_000, "obligation-unknown"),
        ):
            with pytest.raises(LedgerRefused) as refused:
                adjust(step, amount_due_minor, obligation)
            refusals.append(refused.value.reason)

    assert refusals == ["AMOUNT_DUE_NOT_LOWER", "AMOUNT_NEGATIVE", "OBLIGATION_NOT_FOUND"]
    shown = suite.ledger.GetObligation(
        ledger_pb.GetObligationRequest(obligation_id=obligation_id),
        timeout=CALL_TIMEOUT_S,
    ).obligation
    assert shown.amount_due.amount_minor == 2_000


def test_a_car_for_a_risky_user_is_denied_with_reasons_and_no_score(waiver):
    user = waiver.suite.new_user(RISKY)

    order = waiver.create(
        order_no(), user, scenario_id="car-rental", risk_yuan=5000, language_code="zh"
    )

    assert order.state == pb.ORDER_STATE_DENIED
    assert order.decision.outcome == pb.WAIVER_OUTCOME_DENIED
    assert order.decision.deposit_amount.amount_minor == 500_000
    assert 1 <= len(order.decision.reasons) <= 4
    assert all(reason.message and reason.code for reason in order.decision.reasons)
    assert any("\u4e00" <= character <= "\u9fff" for character in order.decision.reasons[0].message)
    assert account(waiver, user).held.amount_minor == 0
    # Merchants never receive the score or the probability of default.
    score = waiver.suite.score_of(user)
    text = str(order)
    assert f"{score.probability_of_default:.3f}" not in text
    assert not any(
        field.name in ("score", "probability_of_default") for field, _ in order.ListFields()
    )


def test_an_expensive_stay_is_waived_in_part_for_a_fairly_reliable_user(waiver):
    # Probability of default 0.08 and the hotel's budget of 150 yuan: about 1,850 of 2,000 yuan.
    user = waiver.suite.new_user(RELIABLE)

    order = waiver.create(order_no(), user, scenario_id="hotel", risk_yuan=2000)

    assert order.decision.outcome == pb.WAIVER_OUTCOME_PARTIAL
    waived = order.decision.waived_amount.amount_minor
    assert 0 < waived < 200_000 and waived % 100 == 0
    assert order.decision.deposit_amount.amount_minor == 200_000 - waived
    assert account(waiver, user).held.amount_minor == waived


def test_an_order_not_returned_is_breached_and_the_default_is_in_the_ledger(waiver):
    user = waiver.suite.new_user(MIDDLING)
    number = order_no()
    waiver.create(number, user)
    policy = waiver.stub.GetScenarioPolicy(
        pb.GetScenarioPolicyRequest(merchant_id=MERCHANT_ID, scenario_id="bike"),
        timeout=CALL_TIMEOUT_S,
    ).policy

    waiver.suite.clock.advance(
        HOUR_US / 1e6 + policy.grace_period.seconds + policy.breach_period.seconds
    )
    shown = waiver.stub.GetOrder(
        pb.GetOrderRequest(merchant_id=MERCHANT_ID, out_order_no=number), timeout=CALL_TIMEOUT_S
    ).order
    assert shown.state == pb.ORDER_STATE_BREACHED, "shown at once, before the sweeper writes it"
    waiver.sweep()

    ledger_account = account(waiver, user)
    assert ledger_account.outcomes.defaulted == 1
    assert ledger_account.held.amount_minor == 0


def cancel(waiver, number):
    waiver.stub.CancelOrder(
        pb.CancelOrderRequest(
            request_id=f"cancel-{number}",
            merchant_id=MERCHANT_ID,
            out_order_no=number,
            reason="plans changed",
        ),
        timeout=CALL_TIMEOUT_S,
    )


def hotel_waived_minor(waiver, user):
    """A 2,000 yuan stay's waived amount for the user; an order with a waiver is cancelled at
    once, so that the next finds the user's capacity free."""
    number = order_no()
    waived_minor = waiver.create(
        number, user, scenario_id="hotel", risk_yuan=2000
    ).decision.waived_amount.amount_minor
    if waived_minor > 0:
        cancel(waiver, number)
    return waived_minor


def record_late_newest_statement(waiver, user, like_client_id):
    """The partner corrects the user's newest statement to three months late."""
    row = next(row for row in taiwan.read_rows(TAIWAN_SAMPLE) if row.client_id == like_client_id)
    report = taiwan.to_partner_report(row)
    report.user_id = user
    newest = max(
        report.statements, key=lambda statement: (statement.period.year, statement.period.month)
    )
    newest.repayment_status = ledger_pb.REPAYMENT_STATUS_LATE
    newest.months_late = 3
    waiver.suite.ledger.RecordPartnerStatements(
        ledger_pb.RecordPartnerStatementsRequest(request_id=f"late-{user}", reports=[report]),
        timeout=CALL_TIMEOUT_S,
    )


def test_a_kept_score_gives_way_to_a_late_statement_before_the_next_order(waiver):
    user = waiver.suite.new_user(RELIABLE)
    waived_before = hotel_waived_minor(waiver, user)
    assert hotel_waived_minor(waiver, user) == waived_before
    assert len(waiver.kept_scores) == 1  # the second order was decided with the kept score

    record_late_newest_statement(waiver, user, RELIABLE)

    # The correction reaches the waiver on the ledger's entry stream, not by the kept score's
    # age: the clock does not move.
    deadline = time.monotonic() + INVALIDATION_WAIT_S
    waived_after = hotel_waived_minor(waiver, user)
    while waived_after == waived_before and time.monotonic() < deadline:
        time.sleep(0.05)
        waived_after = hotel_waived_minor(waiver, user)
    assert waived_after < waived_before


def test_creating_twice_holds_once_and_other_parameters_are_refused(waiver):
    user = waiver.suite.new_user(RELIABLE)
    number = order_no()
    first = waiver.create(number, user)

    again = waiver.create(number, user)
    assert again == first
    assert account(waiver, user).held.amount_minor == 9900
    with pytest.raises(grpc.RpcError) as refused:
        waiver.create(number, user, risk_yuan=98)
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_details(refused.value).reason == "ORDER_ALREADY_EXISTS"


def test_a_step_from_the_wrong_state_names_the_state(waiver):
    user = waiver.suite.new_user(RELIABLE)
    number = order_no()
    waiver.create(number, user)
    cancel(waiver, number)

    with pytest.raises(grpc.RpcError) as refused:
        waiver.stub.CompleteOrder(
            pb.CompleteOrderRequest(
                request_id=f"complete-{number}",
                merchant_id=MERCHANT_ID,
                out_order_no=number,
                total_amount=yuan(1),
                end_time=timestamp(waiver.suite.clock.now_us()),
            ),
            timeout=CALL_TIMEOUT_S,
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(refused.value).reason == "ORDER_STATE_INVALID"
    assert "ORDER_STATE_REVOKED" in refused.value.details()
    assert account(waiver, user).held.amount_minor == 0


def test_unknown_orders_and_scenarios_are_not_found(waiver):
    with pytest.raises(grpc.RpcError) as missing:
        waiver.stub.GetOrder(
            pb.GetOrderRequest(merchant_id=MERCHANT_ID, out_order_no="nope"), timeout=CALL_TIMEOUT_S
        )
    assert (missing.value.code(), error_details(missing.value).reason) == (
        grpc.StatusCode.NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    with pytest.raises(grpc.RpcError) as no_scenario:
        waiver.create(order_no(), "u-x", scenario_id="spaceship")
    assert error_details(no_scenario.value).reason == "SCENARIO_NOT_FOUND"


def test_orders_are_listed_newest_first_page_by_page(waiver):
    user = waiver.suite.new_user(RELIABLE)
    numbers = []
    for _ in range(5):
        numbers.append(order_no())
        waiver.create(numbers[-1], user)
        waiver.suite.clock.advance(1)

    listed, token = [], ""
    while True:
        page = waiver.stub.ListOrders(
            pb.ListOrdersRequest(merchant_id=MERCHANT_ID, page_size=2, page_token=token),
            timeout=CALL_TIMEOUT_S,
        )
        listed += [order.out_order_no for order in page.orders]
        token = page.next_page_token
        if not token:
            break
    assert listed == numbers[::-1]


def test_the_seed_policies_are_listed_in_pages(waiver):
    first = waiver.stub.ListScenarioPolicies(
        pb.ListScenarioPoliciesRequest(merchant_id=MERCHANT_ID, page_size=4), timeout=CALL_TIMEOUT_S
    )
    second = waiver.stub.ListScenarioPolicies(
        pb.ListScenarioPoliciesRequest(
            merchant_id=MERCHANT_ID, page_size=4, page_token=first.next_page_token
        ),
        timeout=CALL_TIMEOUT_S,
    )
    names = [policy.scenario_id for policy in (*first.policies, *second.policies)]
    assert names == sorted(["apartment", "bike", "car-rental", "generic", "hotel", "power-bank"])
    assert second.next_page_token == ""


def test_a_lowered_total_lowers_what_the_user_owes_in_the_ledger(waiver):
    user = waiver.suite.new_user(RELIABLE)
    number = order_no()
    waiver.create(number, user)
    now_us = waiver.suite.clock.now_us()
    waiver.stub.CompleteOrder(
        pb.CompleteOrderRequest(
            request_id=f"complete-{number}",
            merchant_id=MERCHANT_ID,
            out_order_no=number,
            total_amount=yuan(30),
            end_time=timestamp(now_us),
        ),
        timeout=CALL_TIMEOUT_S,
    )

    modified = waiver.stub.ModifyOrder(
        pb.ModifyOrderRequest(
            request_id=f"modify-{number}",
            merchant_id=MERCHANT_ID,
            out_order_no=number,
            total_amount=yuan(20),
            reason="rain discount",
        ),
        timeout=CALL_TIMEOUT_S,
    ).order
    assert (modified.state, modified.state_reason) == (
        pb.ORDER_STATE_AWAITING_PAYMENT,
        "rain discount",
    )
    assert modified.credit_charge_amount.amount_minor == 2000
    assert account(waiver, user).outstanding.amount_minor == 2000
    with pytest.raises(grpc.RpcError) as not_lower:
        waiver.stub.ModifyOrder(
            pb.ModifyOrderRequest(
                request_id=f"modify-again-{number}",
                merchant_id=MERCHANT_ID,
                out_order_no=number,
                total_amount=yuan(25),
                reason="more",
            ),
            timeout=CALL_TIMEOUT_S,
        )
    assert error_details(not_lower.value).reason == "TOTAL_NOT_LOWER"

    waived = waiver.stub.ModifyOrder(
        pb.ModifyOrderRequest(
            request_id=f"modify-free-{number}",
            merchant_id=MERCHANT_ID,
            out_order_no=number,
            total_amount=yuan(0),
            reason="on the house",
        ),
        timeout=CALL_TIMEOUT_S,
    ).order
    assert waived.state == pb.ORDER_STATE_DONE
    ledger_account = account(waiver, user)
    assert (ledger_account.outstanding.amount_minor, ledger_account.outcomes.on_time) == (0, 1)
