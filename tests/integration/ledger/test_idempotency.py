"""Every mutation is idempotent on its request id, failures included."""

from __future__ import annotations

import threading

import grpc
from sesame.ledger.v1 import ledger_service_pb2 as pb


def test_a_retried_request_returns_the_identical_response_and_writes_once(client):
    client.set_capacity("user-1", 50_000)
    request = client.place_hold_request("user-1", 30_000, reference="order-1")

    first = client.call("PlaceHold", request)
    client.clock.advance(seconds=30)
    retried = client.call("PlaceHold", request)

    assert retried == first
    assert client.summary("user-1").open_hold_count == 1
    assert client.entry_count() == 2


def test_every_mutation_replays_its_stored_response(client):
    def replayed(method, request):
        first = client.call(method, request)
        entries = client.entry_count()
        assert client.call(method, request) == first
        assert client.entry_count() == entries
        return first

    capacity = pb.SetWaiverCapacityRequest(
        request_id="capacity", user_id="user-1", capacity=client.money(50_000)
    )
    replayed("SetWaiverCapacity", capacity)
    hold = replayed("PlaceHold", client.place_hold_request("user-1", 10_000)).hold
    other_hold = replayed("PlaceHold", client.place_hold_request("user-1", 10_000)).hold
    replayed("ReleaseHold", pb.ReleaseHoldRequest(request_id="release", hold_id=other_hold.hold_id))
    captured = replayed("CaptureHold", client.capture_request(hold.hold_id, 5_000, due_in_s=3600))
    obligation_id = captured.obligation.obligation_id
    payment = pb.RecordPaymentRequest(
        request_id="payment", obligation_id=obligation_id, amount=client.money(5_000)
    )
    replayed("RecordPayment", payment)
    closing = pb.CloseObligationRequest(
        request_id="closing", obligation_id=obligation_id, outcome=pb.OBLIGATION_OUTCOME_ON_TIME
    )
    replayed("CloseObligation", closing)
    created = pb.CreateObligationRequest(
        request_id="created", user_id="user-1", amount_due=client.money(700)
    )
    created.due_time.CopyFrom(client.timestamp_in(3600))
    created_obligation_id = replayed("CreateObligation", created).obligation.obligation_id
    lowered = pb.ReduceObligationRequest(
        request_id="lowered", obligation_id=created_obligation_id, amount_due=client.money(500)
    )
    replayed("ReduceObligation", lowered)
    report = pb.PartnerReport(user_id="user-1", partner_id="bank", credit_line=client.money(9))
    replayed(
        "RecordPartnerStatements",
        pb.RecordPartnerStatementsRequest(request_id="statements", reports=[report]),
    )
    assert client.verify().intact


def test_a_refusal_is_stored_and_replayed_even_after_the_state_changed(client):
    client.set_capacity("user-1", 10_000)
    request = client.place_hold_request("user-1", 20_000)
    first = client.rejection(lambda: client.call("PlaceHold", request))
    assert first[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_CAPACITY")

    client.set_capacity("user-1", 100_000)
    retried = client.rejection(lambda: client.call("PlaceHold", request))

    assert retried == first
    assert client.summary("user-1").open_hold_count == 0
    # A new request id is a new request, and now there is room.
    request.request_id = "a-new-request-id"
    assert client.call("PlaceHold", request).hold.state == pb.HOLD_STATE_OPEN


def test_the_same_request_id_for_a_different_request_is_aborted(client):
    client.set_capacity("user-1", 50_000)
    request = client.place_hold_request("user-1", 10_000)
    client.call("PlaceHold", request)
    entries = client.entry_count()

    request.amount.amount_minor = 10_001
    code, reason, _ = client.rejection(lambda: client.call("PlaceHold", request))
    release = pb.ReleaseHoldRequest(request_id=request.request_id, hold_id="hold_x")
    other_method = client.rejection(lambda: client.call("ReleaseHold", release))

    assert (code, reason) == (grpc.StatusCode.ABORTED, "REQUEST_ID_REUSED")
    # The request id is checked before the hold is looked up.
    assert other_method[:2] == (grpc.StatusCode.ABORTED, "REQUEST_ID_REUSED")
    assert client.entry_count() == entries


def test_the_same_request_id_for_another_method_is_aborted(client):
    client.set_capacity("user-1", 50_000)
    request = client.place_hold_request("user-1", 10_000)
    client.call("PlaceHold", request)
    obligation = pb.CreateObligationRequest(
        request_id=request.request_id, user_id="user-1", amount_due=client.money(5)
    )
    obligation.due_time.CopyFrom(client.timestamp_in(60))

    code, reason, _ = client.rejection(lambda: client.call("CreateObligation", obligation))

    assert (code, reason) == (grpc.StatusCode.ABORTED, "REQUEST_ID_REUSED")


def test_invalid_input_is_not_stored_so_the_request_id_stays_usable(client):
    client.set_capacity("user-1", 50_000)
    request = client.place_hold_request("user-1", 0)
    code, reason, _ = client.rejection(lambda: client.call("PlaceHold", request))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "AMOUNT_NOT_POSITIVE")

    request.amount.amount_minor = 100

    assert client.call("PlaceHold", request).hold.amount.amount_minor == 100


def test_concurrent_duplicates_have_one_effect(client):
    client.set_capacity("user-1", 1_000_000)
    request = client.place_hold_request("user-1", 1_000)
    responses: list[pb.PlaceHoldResponse] = []
    start = threading.Barrier(8)

    def place() -> None:
        start.wait()
        responses.append(client.call("PlaceHold", request))

    threads = [threading.Thread(target=place) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(responses) == 8
    assert len({response.hold.hold_id for response in responses}) == 1
    assert client.summary("user-1").open_hold_count == 1
    assert client.stored_request_count() == 2
