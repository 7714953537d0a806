"""Obligations through the gRPC API: creation, payments and outcomes."""

from __future__ import annotations

import grpc
from sesame.ledger.v1 import ledger_service_pb2 as pb


def test_an_obligation_is_created_open_and_counts_as_outstanding(client):
    obligation = client.create_obligation("user-1", 8_000, purpose="power bank")

    assert obligation.state == pb.OBLIGATION_STATE_OPEN
    assert obligation.outcome == pb.OBLIGATION_OUTCOME_UNSPECIFIED
    assert obligation.amount_due.amount_minor == 8_000
    assert obligation.amount_paid.amount_minor == 0
    assert obligation.purpose == "power bank"
    assert not obligation.HasField("close_time")
    assert client.summary("user-1").outstanding.amount_minor == 8_000


def test_partial_then_full_payments_reduce_what_is_outstanding(client):
    obligation = client.create_obligation("user-1", 8_000)

    after_first = client.pay(obligation.obligation_id, 3_000)
    after_second = client.pay(obligation.obligation_id, 5_000)

    assert after_first.amount_paid.amount_minor == 3_000
    assert after_second.amount_paid.amount_minor == 8_000
    assert after_second.state == pb.OBLIGATION_STATE_OPEN
    assert client.summary("user-1").outstanding.amount_minor == 0


def test_a_payment_above_what_is_due_is_refused(client):
    obligation = client.create_obligation("user-1", 8_000)
    client.pay(obligation.obligation_id, 3_000)

    code, reason, _ = client.rejection(lambda: client.pay(obligation.obligation_id, 5_001))

    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PAYMENT_EXCEEDS_DUE")
    assert client.summary("user-1").outstanding.amount_minor == 5_000


def test_closing_on_time_needs_full_payment(client):
    obligation = client.create_obligation("user-1", 8_000)
    client.pay(obligation.obligation_id, 7_999)

    code, reason, _ = client.rejection(
        lambda: client.close_obligation(obligation.obligation_id, pb.OBLIGATION_OUTCOME_ON_TIME)
    )

    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "OBLIGATION_NOT_PAID_IN_FULL")


def test_outcomes_are_counted_by_lateness(client):
    outcomes = [
        (pb.OBLIGATION_OUTCOME_ON_TIME, 0),
        (pb.OBLIGATION_OUTCOME_LATE, 30),
        (pb.OBLIGATION_OUTCOME_LATE, 31),
    ]
    for outcome, days_late in outcomes:
        obligation = client.create_obligation("user-1", 1_000)
        client.pay(obligation.obligation_id, 1_000)
        closed = client.close_obligation(obligation.obligation_id, outcome, days_late=days_late)
        assert closed.state == pb.OBLIGATION_STATE_CLOSED
        assert closed.outcome == outcome
        assert closed.days_late == days_late
        assert closed.HasField("close_time")
    defaulted = client.create_obligation("user-1", 1_000)
    client.pay(defaulted.obligation_id, 400)
    client.close_obligation(defaulted.obligation_id, pb.OBLIGATION_OUTCOME_DEFAULTED)

    counts = client.summary("user-1").outcomes

    assert (counts.on_time, counts.late_up_to_30_days, counts.late_over_30_days) == (1, 1, 1)
    assert counts.defaulted == 1
    # A defaulted obligation is closed: what it still owed no longer counts as outstanding.
    assert client.summary("user-1").outstanding.amount_minor == 0
    assert client.verify("user-1").intact


def test_late_needs_days_late_and_other_outcomes_refuse_them(client):
    obligation = client.create_obligation("user-1", 1_000)
    client.pay(obligation.obligation_id, 1_000)

    late_without_days = client.rejection(
        lambda: client.close_obligation(obligation.obligation_id, pb.OBLIGATION_OUTCOME_LATE)
    )
    on_time_with_days = client.rejection(
        lambda: client.close_obligation(
            obligation.obligation_id, pb.OBLIGATION_OUTCOME_ON_TIME, days_late=3
        )
    )

    for code, reason, fields in (late_without_days, on_time_with_days):
        assert (code, reason, fields) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "DAYS_LATE_INVALID",
            ("days_late",),
        )


def test_a_closed_obligation_takes_no_payment_and_no_second_outcome(client):
    obligation = client.create_obligation("user-1", 1_000)
    client.close_obligation(obligation.obligation_id, pb.OBLIGATION_OUTCOME_DEFAULTED)

    for call in (
        lambda: client.pay(obligation.obligation_id, 1),
        lambda: client.close_obligation(obligation.obligation_id, pb.OBLIGATION_OUTCOME_DEFAULTED),
    ):
        code, reason, _ = client.rejection(call)
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "OBLIGATION_ALREADY_CLOSED")


def test_an_unknown_obligation_is_not_found(client):
    for call in (
        lambda: client.call("GetObligation", pb.GetObligationRequest(obligation_id="nope")),
        lambda: client.pay("nope", 1),
        lambda: client.close_obligation("nope", pb.OBLIGATION_OUTCOME_DEFAULTED),
    ):
        code, reason, _ = client.rejection(call)
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "OBLIGATION_NOT_FOUND")


def test_a_payment_in_another_currency_is_invalid(client):
    obligation = client.create_obligation("user-1", 1_000)
    request = pb.RecordPaymentRequest(
        request_id=client.new_request_id(),
        obligation_id=obligation.obligation_id,
        amount=client.money(100, "USD"),
    )

    code, reason, fields = client.rejection(lambda: client.call("RecordPayment", request))

    assert (code, reason, fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "CURRENCY_MISMATCH",
        ("amount.currency_code",),
    )


def test_payment_and_closing_times_default_to_now_or_take_the_given_time(client):
    obligation = client.create_obligation("user-1", 1_000)
    client.pay(obligation.obligation_id, 1_000)
    request = pb.CloseObligationRequest(
        request_id=client.new_request_id(),
        obligation_id=obligation.obligation_id,
        outcome=pb.OBLIGATION_OUTCOME_LATE,
        days_late=2,
    )
    request.close_time.CopyFrom(client.timestamp_in(3 * 86_400))

    closed = client.call("CloseObligation", request).obligation

    assert closed.close_time == request.close_time
