"""Account summaries and the paginated entry list."""

from __future__ import annotations

import json

import grpc
from sesame.ledger.v1 import ledger_service_pb2 as pb


def list_entries(client, **fields):
    return client.call("ListEntries", pb.ListEntriesRequest(**fields))


def test_an_unknown_user_has_a_zero_summary(client):
    summary = client.summary("nobody")

    assert summary.user_id == "nobody"
    assert summary.waiver_capacity.amount_minor == 0
    assert summary.held.amount_minor == 0
    assert summary.outstanding.amount_minor == 0
    assert summary.open_hold_count == 0
    assert summary.last_user_sequence == 0


def test_entries_page_through_the_whole_journal_in_global_order(client):
    for user in ("user-a", "user-b", "user-c"):
        client.set_capacity(user, 1_000)
        client.place_hold(user, 10)
    seen = []
    token = ""
    pages = 0
    while True:
        page = list_entries(client, page_size=4, page_token=token)
        seen.extend(page.entries)
        pages += 1
        token = page.next_page_token
        if not token:
            break

    assert pages == 2
    assert [entry.global_sequence for entry in seen] == list(range(1, 7))
    first = seen[0]
    assert first.type == pb.ENTRY_TYPE_CAPACITY_SET
    assert first.user_sequence == 1
    assert first.previous_hash == "0" * 64
    assert json.loads(first.payload_json) == {
        "capacity_minor": 1000,
        "currency_code": "CNY",
        "reason": "test",
    }
    assert seen[1].previous_hash == first.hash
    assert seen[1].type == pb.ENTRY_TYPE_HOLD_PLACED


def test_entries_of_one_user_page_through_that_user_only(client):
    for _ in range(3):
        client.set_capacity("user-a", 1_000)
        client.set_capacity("user-b", 1_000)

    first = list_entries(client, user_id="user-b", page_size=2)
    second = list_entries(client, user_id="user-b", page_size=2, page_token=first.next_page_token)

    entries = list(first.entries) + list(second.entries)
    assert [entry.user_sequence for entry in entries] == [1, 2, 3]
    assert {entry.user_id for entry in entries} == {"user-b"}
    assert [entry.global_sequence for entry in entries] == [2, 4, 6]
    assert second.next_page_token == ""


def test_a_page_token_only_continues_its_own_listing(client):
    for _ in range(3):
        client.set_capacity("user-a", 1_000)
    token = list_entries(client, user_id="user-a", page_size=1).next_page_token

    for request in (
        pb.ListEntriesRequest(page_token=token),
        pb.ListEntriesRequest(user_id="user-a", page_token="not-a-token"),
    ):
        code, reason, fields = client.rejection(
            lambda request=request: client.call("ListEntries", request)
        )
        assert (code, reason, fields) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "PAGE_TOKEN_INVALID",
            ("page_token",),
        )


def test_page_sizes_outside_the_contract_are_invalid(client):
    code, reason, fields = client.rejection(lambda: list_entries(client, page_size=1001))

    assert (code, reason, fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "VALUE_OUT_OF_RANGE",
        ("page_size",),
    )
