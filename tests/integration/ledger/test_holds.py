"""Holds through the gRPC API: capacity, placing, capturing, releasing, expiring."""

from __future__ import annotations

import grpc
from sesame.ledger.v1 import ledger_service_pb2 as pb

HOUR_S = 3600


def test_setting_capacity_is_journaled_and_reported(client):
    account = client.set_capacity("user-1", 50_000)

    assert account.waiver_capacity.amount_minor == 50_000
    assert account.waiver_capacity.currency_code == "CNY"
    assert account.available.amount_minor == 50_000
    assert account.last_user_sequence == 1
    assert client.entry_count() == 1


def test_a_placed_hold_uses_capacity(client):
    client.set_capacity("user-1", 50_000)

    hold = client.place_hold("user-1", 30_000, expires_in_s=HOUR_S, reference="order-42")

    assert hold.state == pb.HOLD_STATE_OPEN
    assert hold.amount.amount_minor == 30_000
    assert hold.reference == "order-42"
    assert hold.expire_time.seconds - hold.place_time.seconds == HOUR_S
    assert not hold.HasField("resolve_time")
    summary = client.summary("user-1")
    assert summary.held.amount_minor == 30_000
    assert summary.available.amount_minor == 20_000
    assert summary.open_hold_count == 1


def test_a_hold_beyond_available_capacity_is_refused(client):
    client.set_capacity("user-1", 50_000)
    client.place_hold("user-1", 30_000)

    code, reason, _ = client.rejection(lambda: client.place_hold("user-1", 20_001))

    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_CAPACITY")
    assert client.summary("user-1").open_hold_count == 1


def test_a_user_without_capacity_cannot_hold(client):
    code, reason, _ = client.rejection(lambda: client.place_hold("user-1", 1))

    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_CAPACITY")


def test_a_hold_in_another_currency_than_the_capacity_is_refused(client):
    client.set_capacity("user-1", 50_000)
    request = client.place_hold_request("user-1", 100)
    request.amount.currency_code = "USD"

    code, reason, _ = client.rejection(lambda: client.call("PlaceHold", request))

    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CURRENCY_MISMATCH")


def test_expired_holds_stop_counting_against_capacity_before_the_sweep(client):
    client.set_capacity("user-1", 10_000)
    client.place_hold("user-1", 10_000, expires_in_s=60)
    client.clock.advance(seconds=61)

    hold = client.place_hold("user-1", 10_000)

    assert hold.state == pb.HOLD_STATE_OPEN
    assert client.summary("user-1").held.amount_minor == 10_000


def test_capturing_part_of_a_hold_releases_the_rest(client):
    client.set_capacity("user-1", 50_000)
    hold = client.place_hold("user-1", 30_000)

    captured = client.capture(hold.hold_id, 12_000).hold

    assert captured.state == pb.HOLD_STATE_CAPTURED
    assert captured.captured_amount.amount_minor == 12_000
    assert captured.HasField("resolve_time")
    assert client.summary("user-1").held.amount_minor == 0
    assert client.summary("user-1").available.amount_minor == 50_000


def test_a_capture_can_create_an_obligation_in_the_same_transaction(client):
    client.set_capacity("user-1", 50_000)
    hold = client.place_hold("user-1", 30_000, reference="order-7")

    response = client.capture(hold.hold_id, 30_000, due_in_s=86_400, purpose="bike rental fee")

    obligation = response.obligation
    assert response.hold.obligation_id == obligation.obligation_id != ""
    assert obligation.amount_due.amount_minor == 30_000
    assert obligation.hold_id == hold.hold_id
    assert obligation.reference == "order-7"
    assert obligation.purpose == "bike rental fee"
    assert obligation.state == pb.OBLIGATION_STATE_OPEN
    assert client.summary("user-1").outstanding.amount_minor == 30_000
    fetched = client.call(
        "GetObligation", pb.GetObligationRequest(obligation_id=obligation.obligation_id)
    ).obligation
    assert fetched == obligation
    assert client.entry_count() == 4  # capacity, placed, captured, obligation created


def test_capturing_more_than_the_hold_is_invalid_and_writes_nothing(client):
    client.set_capacity("user-1", 50_000)
    hold = client.place_hold("user-1", 30_000)
    entries_before = client.entry_count()
    requests_before = client.stored_request_count()

    code, reason, fields = client.rejection(lambda: client.capture(hold.hold_id, 30_001))

    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "CAPTURE_EXCEEDS_HOLD")
    assert fields == ("amount.amount_minor",)
    assert client.entry_count() == entries_before
    assert client.stored_request_count() == requests_before
    assert client.get_hold(hold.hold_id).state == pb.HOLD_STATE_OPEN


def test_a_hold_is_resolved_exactly_once(client):
    client.set_capacity("user-1", 50_000)
    hold = client.place_hold("user-1", 30_000)
    client.release(hold.hold_id, fulfilled=True)

    for second_resolution in (
        lambda: client.capture(hold.hold_id, 1),
        lambda: client.release(hold.hold_id),
    ):
        code, reason, _ = client.rejection(second_resolution)
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "HOLD_ALREADY_RESOLVED")
    assert client.get_hold(hold.hold_id).state == pb.HOLD_STATE_RELEASED


def test_releasing_records_fulfilment(client):
    client.set_capacity("user-1", 50_000)
    hold = client.place_hold("user-1", 30_000)

    released = client.release(hold.hold_id, fulfilled=True)

    assert released.state == pb.HOLD_STATE_RELEASED
    assert released.fulfilled
    summary = client.summary("user-1")
    assert summary.outcomes.fulfilled == 1
    assert summary.held.amount_minor == 0


def test_an_expired_hold_reads_as_expired_and_cannot_be_captured_before_the_sweep(client):
    client.set_capacity("user-1", 50_000)
    hold = client.place_hold("user-1", 30_000, expires_in_s=60)
    client.clock.advance(seconds=60)

    seen = client.get_hold(hold.hold_id)
    code, reason, _ = client.rejection(lambda: client.capture(hold.hold_id, 1))

    assert seen.state == pb.HOLD_STATE_EXPIRED
    assert seen.resolve_time == seen.expire_time
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "HOLD_EXPIRED")
    code, reason, _ = client.rejection(lambda: client.release(hold.hold_id))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "HOLD_EXPIRED")


def test_the_sweeper_journals_expiries_oldest_first_in_bounded_calls(client):
    client.set_capacity("user-1", 50_000)
    client.set_capacity("user-2", 50_000)
    holds = [
        client.place_hold("user-1", 1_000, expires_in_s=60),
        client.place_hold("user-2", 1_000, expires_in_s=30),
        client.place_hold("user-1", 1_000, expires_in_s=90),
    ]
    still_open = client.place_hold("user-2", 1_000, expires_in_s=HOUR_S)
    client.clock.advance(seconds=120)
    entries_before = client.entry_count()

    first = client.sweep(max_holds=2)
    second = client.sweep(max_holds=2)
    third = client.sweep()

    assert (first.expired_count, first.more_remaining) == (2, True)
    assert (second.expired_count, second.more_remaining) == (1, False)
    assert (third.expired_count, third.more_remaining) == (0, False)
    assert client.entry_count() == entries_before + 3
    for hold in holds:
        expired = client.get_hold(hold.hold_id)
        assert expired.state == pb.HOLD_STATE_EXPIRED
        assert expired.resolve_time == expired.expire_time
    assert client.get_hold(still_open.hold_id).state == pb.HOLD_STATE_OPEN
    assert client.summary("user-1").open_hold_count == 0
    assert client.verify().intact


def test_an_unknown_hold_is_not_found(client):
    for call in (
        lambda: client.get_hold("hold_unknown"),
        lambda: client.capture("hold_unknown", 1),
        lambda: client.release("hold_unknown"),
    ):
        code, reason, _ = client.rejection(call)
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "HOLD_NOT_FOUND")
    assert client.stored_request_count() == 0


def test_capacity_lowered_below_what_is_held_blocks_new_holds_only(client):
    client.set_capacity("user-1", 50_000)
    hold = client.place_hold("user-1", 30_000)

    account = client.set_capacity("user-1", 10_000)

    assert account.held.amount_minor == 30_000
    assert account.available.amount_minor == 0
    assert client.get_hold(hold.hold_id).state == pb.HOLD_STATE_OPEN
    code, reason, _ = client.rejection(lambda: client.place_hold("user-1", 1))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_CAPACITY")


def test_ids_with_quotes_backslashes_commas_and_braces_are_kept_exactly(client):
    """Ids may hold any printable ASCII; the storage looks them up in lists (array literals
    on PostgreSQL), where these characters and the word NULL have a meaning of their own."""
    user_id = 'user "1", \\ {a,b} '
    client.set_capacity(user_id, 50_000)
    request = client.place_hold_request(user_id, 30_000)
    request.request_id = "NULL"

    hold = client.call("PlaceHold", request).hold
    retried = client.call("PlaceHold", request).hold
    released = client.release(hold.hold_id)

    assert retried == hold
    assert released.state == pb.HOLD_STATE_RELEASED
    summary = client.summary(user_id)
    assert summary.user_id == user_id
    assert (summary.held.amount_minor, summary.open_hold_count) == (0, 0)
    assert client.verify(user_id).intact
