"""Journal entries and how a user's events are chained onto the journal."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from services.ledger.domain.canonical import (
    canonical_entry,
    chain_hash,
    plain_canonical_json,
    request_hash,
)
from services.ledger.domain.events import EntryType, Event, decode_event, event_payload
from services.ledger.domain.records import ChainHead

# Entries the ledger writes on its own, with no client request and so no request record: the
# sweeper's expiries and the signed checkpoints. Each carries a request id and hash derived
# from what it records (`expiry_request`, `checkpoints.checkpoint_request`), which the verifier
# recomputes; every other entry was written by a request whose record must agree with it.
OWN_ENTRY_TYPES = frozenset({EntryType.HOLD_EXPIRED, EntryType.CHECKPOINT_SIGNED})
EXPIRY_METHOD = "ExpireHold"


def expiry_request(hold_id: str) -> tuple[str, str]:
    """The request id and hash an expiry of the hold is journaled under."""
    return f"expiry:{hold_id}", request_hash(EXPIRY_METHOD, {"hold_id": hold_id})


@dataclass(frozen=True, slots=True)
class NewEntry:
    """An entry chained to its user's previous one, before its global sequence is allocated."""

    user_id: str
    user_sequence: int
    entry_type: str
    payload_json: str
    request_id: str
    request_hash: str
    previous_hash: str
    hash: str
    recorded_at_us: int


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """An entry as stored: a position in the whole journal and in its user's chain."""

    global_sequence: int
    user_id: str
    user_sequence: int
    entry_type: str
    payload_json: str
    request_id: str
    request_hash: str
    previous_hash: str
    hash: str
    recorded_at_us: int

    @classmethod
    def sequenced(cls, entry: NewEntry, global_sequence: int) -> JournalEntry:
        assert global_sequence > 0
        return cls(
            global_sequence=global_sequence,
            user_id=entry.user_id,
            user_sequence=entry.user_sequence,
            entry_type=entry.entry_type,
            payload_json=entry.payload_json,
            request_id=entry.request_id,
            request_hash=entry.request_hash,
            previous_hash=entry.previous_hash,
            hash=entry.hash,
            recorded_at_us=entry.recorded_at_us,
        )


def chain_events(
    head: ChainHead,
    user_id: str,
    events: Sequence[Event],
    *,
    request_id: str,
    request_hash: str,
    recorded_at_us: int,
) -> tuple[list[NewEntry], ChainHead]:
    """The entries recording `events` after `head`, and the chain's new head."""
    entries: list[NewEntry] = []
    for event in events:
        payload_json = plain_canonical_json(event_payload(event))
        user_sequence = head.user_sequence + 1
        entry_hash = chain_hash(
            head.hash,
            canonical_entry(
                user_id=user_id,
                user_sequence=user_sequence,
                entry_type=event.entry_type.value,
                payload_json=payload_json,
                request_id=request_id,
                request_hash=request_hash,
                recorded_at_us=recorded_at_us,
            ),
        )
        entries.append(
            NewEntry(
                user_id=user_id,
                user_sequence=user_sequence,
                entry_type=event.entry_type.value,
                payload_json=payload_json,
                request_id=request_id,
                request_hash=request_hash,
                previous_hash=head.hash,
                hash=entry_hash,
                recorded_at_us=recorded_at_us,
            )
        )
        head = ChainHead(user_sequence=user_sequence, hash=entry_hash)
    return entries, head


def recomputed_hash(entry: JournalEntry) -> str:
    """The hash an entry should carry given its content and its stored previous hash. Raises
    ValueError when the stored previous hash is not hexadecimal."""
    entry_bytes = canonical_entry(
        user_id=entry.user_id,
        user_sequence=entry.user_sequence,
        entry_type=entry.entry_type,
        payload_json=entry.payload_json,
        request_id=entry.request_id,
        request_hash=entry.request_hash,
        recorded_at_us=entry.recorded_at_us,
    )
    return chain_hash(entry.previous_hash, entry_bytes)


def entry_event(entry: JournalEntry) -> Event | None:
    """The event an entry records; None when its payload cannot be decoded (which verification
    reports as a PROJECTION mismatch, so readers show the entry without it rather than fail)."""
    try:
        return decode_event(entry.entry_type, json.loads(entry.payload_json))
    except ValueError:
        return None
