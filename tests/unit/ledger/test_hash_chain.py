"""The per-user hash chain: each entry's hash covers its content and its predecessor's hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

from services.ledger.domain.canonical import canonical_entry
from services.ledger.domain.events import CapacitySet, HoldReleased
from services.ledger.domain.journal import JournalEntry, chain_events, recomputed_hash
from services.ledger.domain.records import GENESIS_HASH, ChainHead

EVENTS = [
    CapacitySet(currency_code="CNY", capacity_minor=1_000, reason="first"),
    CapacitySet(currency_code="CNY", capacity_minor=2_000, reason="second"),
]


def chained(head=None, events=EVENTS, recorded_at_us=1_000):
    return chain_events(
        head or ChainHead(),
        "user-1",
        events,
        request_id="request-1",
        request_hash="ab" * 32,
        recorded_at_us=recorded_at_us,
    )


def test_the_first_entry_follows_sixty_four_zeros():
    entries, _ = chained()

    assert GENESIS_HASH == "0" * 64
    assert entries[0].previous_hash == GENESIS_HASH
    assert entries[0].user_sequence == 1


def test_each_hash_is_sha256_of_the_previous_hash_bytes_and_the_canonical_entry():
    entries, head = chained()

    for entry in entries:
        content = canonical_entry(
            user_id=entry.user_id,
            user_sequence=entry.user_sequence,
            entry_type=entry.entry_type,
            payload_json=entry.payload_json,
            request_id=entry.request_id,
            request_hash=entry.request_hash,
            recorded_at_us=entry.recorded_at_us,
        )
        expected = hashlib.sha256(bytes.fromhex(entry.previous_hash) + content).hexdigest()
        assert entry.hash == expected
    assert entries[1].previous_hash == entries[0].hash
    assert head == ChainHead(user_sequence=2, hash=entries[1].hash)


def test_the_canonical_entry_carries_every_field_and_a_schema_version():
    entries, _ = chained()
    entry = entries[0]

    content = json.loads(
        canonical_entry(
            user_id=entry.user_id,
            user_sequence=entry.user_sequence,
            entry_type=entry.entry_type,
            payload_json=entry.payload_json,
            request_id=entry.request_id,
            request_hash=entry.request_hash,
            recorded_at_us=entry.recorded_at_us,
        )
    )

    assert content == {
        "schema_version": 1,
        "user_id": "user-1",
        "user_sequence": 1,
        "type": "CAPACITY_SET",
        "payload": {"capacity_minor": 1000, "currency_code": "CNY", "reason": "first"},
        "request_id": "request-1",
        "request_hash": "ab" * 32,
        "recorded_at_us": 1000,
    }


def test_a_chain_continues_from_its_head():
    first, head = chained(events=EVENTS[:1])
    second, _ = chained(head=head, events=EVENTS[1:])
    together, _ = chained()

    assert [entry.hash for entry in first + second] == [entry.hash for entry in together]


def test_changing_anything_in_an_entry_changes_its_hash():
    entries, _ = chained()
    stored = JournalEntry.sequenced(entries[0], global_sequence=1)
    assert recomputed_hash(stored) == stored.hash

    changes = {
        "payload_json": stored.payload_json.replace("1000", "1001"),
        "user_id": "user-2",
        "user_sequence": 2,
        "entry_type": "CAPACITY_SET ",
        "request_id": "request-2",
        "request_hash": "cd" * 32,
        "recorded_at_us": 1_001,
        "previous_hash": "1" * 64,
    }
    for field, value in changes.items():
        tampered = replace(stored, **{field: value})
        assert recomputed_hash(tampered) != stored.hash, field


def test_the_global_sequence_is_not_part_of_the_hash():
    entries, _ = chained()

    assert recomputed_hash(JournalEntry.sequenced(entries[0], 1)) == recomputed_hash(
        JournalEntry.sequenced(entries[0], 99)
    )


def test_a_different_event_type_or_payload_makes_a_different_hash():
    placed, _ = chained(events=[HoldReleased(hold_id="h", fulfilled=True, released_at_us=5)])
    other, _ = chained(events=[HoldReleased(hold_id="h", fulfilled=False, released_at_us=5)])

    assert placed[0].hash != other[0].hash
