"""ReduceObligation through the gRPC API: a discount after the fact lowers what is due, never up
and never below what was paid, and the account, the history and the journal follow."""

from __future__ import annotations

import json

import grpc
from sesame.ledger.v1 import ledger_service_pb2 as pb

FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def test_a_reduction_lowers_the_amount_due_and_what_is_outstanding(client):
    obligation = client.create_obligation("user-1", 8_000)
    other = client.create_obligation("user-1", 1_000)
    client.pay(obligation.obligation_id, 3_000)

    reduced = client.reduce(obligation.obligation_id, 6_500, reason="merchant discount")

    assert reduced.amount_due == client.money(6_500)
    assert reduced.amount_paid == client.money(3_000)
    assert reduced.state == pb.OBLIGATION_STATE_OPEN
    assert (reduced.due_time, reduced.create_time) == (obligation.due_time, obligation.create_time)
    got = client.call("GetObligation", pb.GetObligationRequest(obligation_id=reduced.obligation_id))
    assert got.obligation == reduced
    # 3,500 still due on the reduced obligation and 1,000 on the other.
    assert client.summary("user-1").outstanding.amount_minor == 4_500
    assert other.amount_due.amount_minor == 1_000


def test_the_credit_history_shows_the_new_amount_due(client):
    obligation = client.create_obligation("user-1", 8_000)
    client.clock.advance(seconds=60)
    client.reduce(obligation.obligation_id, 5_000)

    history = client.call("GetCreditHistory", pb.GetCreditHistoryRequest(user_id="user-1"))

    (shown,) = history.obligations
    assert shown.amount_due.amount_minor == 5_000


def test_the_reduction_is_journaled_with_its_amounts_and_reason(client):
    obligation = client.create_obligation("user-1", 8_000)
    reduction = client.reduce_request(obligation.obligation_id, 6_000, reason="damaged box")

    client.call("ReduceObligation", reduction)

    entries = client.call("ListEntries", pb.ListEntriesRequest(user_id="user-1")).entries
    entry = entries[-1]
    assert entry.type == pb.ENTRY_TYPE_OBLIGATION_REDUCED
    assert entry.request_id == reduction.request_id
    assert json.loads(entry.payload_json) == {
        "obligation_id": obligation.obligation_id,
        "previous_amount_due_minor": 8_000,
        "amount_due_minor": 6_000,
        "reason": "damaged box",
        "reduced_at_us": client.clock.now_us(),
    }
    assert entry.obligation_reduced.previous_amount_due == client.money(8_000)
    assert entry.obligation_reduced.amount_due == client.money(6_000)


def test_a_retry_gets_the_stored_answer_even_after_a_later_reduction(client):
    obligation = client.create_obligation("user-1", 8_000)
    request = client.reduce_request(obligation.obligation_id, 7_000)
    first = client.call("ReduceObligation", request)
    client.reduce(obligation.obligation_id, 6_000)
    entries = client.entry_count()

    retried = client.call("ReduceObligation", request)

    assert retried == first
    assert retried.obligation.amount_due.amount_minor == 7_000
    assert client.entry_count() == entries
    assert client.summary("user-1").outstanding.amount_minor == 6_000


def test_the_same_request_id_for_another_amount_is_aborted(client):
    obligation = client.create_obligation("user-1", 8_000)
    request = client.reduce_request(obligation.obligation_id, 7_000)
    client.call("ReduceObligation", request)

    request.amount_due.amount_minor = 6_000
    code, reason, _ = client.rejection(lambda: client.call("ReduceObligation", request))

    assert (code, reason) == (grpc.StatusCode.ABORTED, "REQUEST_ID_REUSED")
    assert client.summary("user-1").outstanding.amount_minor == 7_000


def test_an_amount_not_below_the_current_one_is_refused_and_the_refusal_is_stored(client):
    obligation = client.create_obligation("user-1", 8_000)

    for amount_minor in (8_000, 8_001):
        request = client.reduce_request(obligation.obligation_id, amount_minor)
        stored_before = client.stored_request_count()
        first = client.rejection(lambda request=request: client.call("ReduceObligation", request))

        assert first[:2] == (FAILED_PRECONDITION, "AMOUNT_DUE_NOT_LOWER")
        assert client.stored_request_count() == stored_before + 1
        assert client.rejection(
            lambda request=request: client.call("ReduceObligation", request)
        ) == (first)
    assert client.summary("user-1").outstanding.amount_minor == 8_000


def test_an_amount_below_what_was_paid_is_refused(client):
    obligation = client.create_obligation("user-1", 8_000)
    client.pay(obligation.obligation_id, 3_000)

    code, reason, _ = client.rejection(lambda: client.reduce(obligation.obligation_id, 2_999))

    assert (code, reason) == (FAILED_PRECONDITION, "AMOUNT_DUE_BELOW_PAID")
    assert client.summary("user-1").outstanding.amount_minor == 5_000


def test_a_closed_obligation_is_not_reduced(client):
    obligation = client.create_obligation("user-1", 8_000)
    client.close_obligation(obligation.obligation_id, pb.OBLIGATION_OUTCOME_DEFAULTED)

    code, reason, _ = client.rejection(lambda: client.reduce(obligation.obligation_id, 1_000))

    assert (code, reason) == (FAILED_PRECONDITION, "OBLIGATION_ALREADY_CLOSED")


def test_invalid_and_unknown_targets_are_not_stored(client):
    obligation = client.create_obligation("user-1", 8_000)
    entries, stored = client.entry_count(), client.stored_request_count()
    other_currency = client.reduce_request(obligation.obligation_id, 1_000, currency_code="USD")
    negative = client.reduce_request(obligation.obligation_id, -1)
    unknown = client.reduce_request("obligation-unknown", 1_000)

    answers = [
        client.rejection(lambda request=request: client.call("ReduceObligation", request))
        for request in (other_currency, negative, unknown)
    ]

    assert answers == [
        (grpc.StatusCode.INVALID_ARGUMENT, "CURRENCY_MISMATCH", ("amount_due.currency_code",)),
        (grpc.StatusCode.INVALID_ARGUMENT, "AMOUNT_NEGATIVE", ("amount_due.amount_minor",)),
        (grpc.StatusCode.NOT_FOUND, "OBLIGATION_NOT_FOUND", ()),
    ]
    assert (client.entry_count(), client.stored_request_count()) == (entries, stored)
    # Not stored, so the same request id may carry a valid request.
    other_currency.amount_due.currency_code = "CNY"
    assert client.call("ReduceObligation", other_currency).obligation.amount_due.amount_minor == (
        1_000
    )


def test_reduced_to_what_was_paid_the_obligation_closes_on_time(client):
    obligation = client.create_obligation("user-1", 8_000)
    client.pay(obligation.obligation_id, 3_000)
    client.reduce(obligation.obligation_id, 3_000)

    closed = client.close_obligation(obligation.obligation_id, pb.OBLIGATION_OUTCOME_ON_TIME)

    assert closed.state == pb.OBLIGATION_STATE_CLOSED
    assert (closed.amount_due.amount_minor, closed.amount_paid.amount_minor) == (3_000, 3_000)
    summary = client.summary("user-1")
    assert summary.outstanding.amount_minor == 0
    assert summary.outcomes.on_time == 1
    assert client.verify("user-1").intact


def test_reduced_to_zero_with_nothing_paid_the_obligation_closes_on_time(client):
    obligation = client.create_obligation("user-1", 8_000)

    reduced = client.reduce(obligation.obligation_id, 0, reason="order cancelled by merchant")
    closed = client.close_obligation(obligation.obligation_id, pb.OBLIGATION_OUTCOME_ON_TIME)

    assert reduced.amount_due == client.money(0)
    assert closed.outcome == pb.OBLIGATION_OUTCOME_ON_TIME
    assert client.summary("user-1").outstanding.amount_minor == 0
    assert client.verify().intact


def test_an_obligation_from_a_capture_is_reduced_like_any_other(client):
    client.set_capacity("user-1", 50_000)
    hold = client.place_hold("user-1", 20_000)
    captured = client.capture(hold.hold_id, 12_000, due_in_s=86_400).obligation

    reduced = client.reduce(captured.obligation_id, 9_000)

    assert reduced.hold_id == hold.hold_id
    summary = client.summary("user-1")
    assert summary.outstanding.amount_minor == 9_000
    # Capacity is about holds: lowering what is owed leaves it as it was.
    assert summary.available.amount_minor == 50_000
    assert client.verify().intact
