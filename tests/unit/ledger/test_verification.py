"""verify_user: recompute a chain and its projection, and report the first mismatch."""

from __future__ import annotations

from dataclasses import replace

from services.ledger.domain.events import (
    CapacitySet,
    HoldPlaced,
    HoldReleased,
    ObligationCreated,
    ObligationReduced,
)
from services.ledger.domain.journal import JournalEntry, chain_events
from services.ledger.domain.projection import apply
from services.ledger.domain.records import ChainHead, UserState
from services.ledger.domain.verification import MismatchKind, verify_user

EVENTS = [
    CapacitySet("CNY", 1_000, ""),
    HoldPlaced("h", "CNY", 100, "", placed_at_us=1, expires_at_us=9),
    HoldReleased("h", fulfilled=True, released_at_us=2),
]


def journal_and_projection():
    new_entries, head = chain_events(
        UserState.empty("user-1").chain,
        "user-1",
        EVENTS,
        request_id="r",
        request_hash="ab" * 32,
        recorded_at_us=5,
    )
    entries = [JournalEntry.sequenced(entry, 10 + index) for index, entry in enumerate(new_entries)]
    stored = UserState.empty("user-1")
    for event in EVENTS:
        apply(stored, event)
    stored.chain = head
    return entries, stored


def test_an_intact_chain_and_projection_verify():
    entries, stored = journal_and_projection()

    verified = verify_user("user-1", entries, stored)

    assert (verified.entries_checked, verified.mismatch) == (3, None)


def test_an_edited_payload_is_a_hash_mismatch_at_that_entry():
    entries, stored = journal_and_projection()
    entries[1] = replace(entries[1], payload_json=entries[1].payload_json.replace("100", "101"))

    mismatch = verify_user("user-1", entries, stored).mismatch

    assert mismatch is not None
    assert (mismatch.kind, mismatch.user_sequence, mismatch.global_sequence) == (
        MismatchKind.HASH,
        2,
        11,
    )


def test_reformatted_but_equal_json_still_breaks_the_hash():
    entries, stored = journal_and_projection()
    entries[0] = replace(entries[0], payload_json=entries[0].payload_json.replace(":", ": "))

    mismatch = verify_user("user-1", entries, stored).mismatch

    assert mismatch is not None and mismatch.kind is MismatchKind.HASH


def test_a_missing_entry_is_a_sequence_mismatch():
    entries, stored = journal_and_projection()

    mismatch = verify_user("user-1", [entries[0], entries[2]], stored).mismatch

    assert mismatch is not None
    assert (mismatch.kind, mismatch.user_sequence) == (MismatchKind.SEQUENCE, 3)


def test_a_relinked_entry_is_a_previous_hash_mismatch():
    entries, stored = journal_and_projection()
    entries[2] = replace(entries[2], previous_hash=entries[0].hash)

    mismatch = verify_user("user-1", entries, stored).mismatch

    assert mismatch is not None and mismatch.kind is MismatchKind.PREVIOUS_HASH


def test_a_projection_that_differs_from_the_rebuild_is_named():
    entries, stored = journal_and_projection()
    stored.holds["h"] = replace(stored.holds["h"], fulfilled=False)

    mismatch = verify_user("user-1", entries, stored).mismatch

    assert mismatch is not None
    assert (mismatch.kind, mismatch.global_sequence) == (MismatchKind.PROJECTION, 0)
    assert mismatch.detail == "hold h: fulfilled differs from the journal"


def test_a_missing_account_row_is_a_projection_mismatch():
    entries, _ = journal_and_projection()

    mismatch = verify_user("user-1", entries, None).mismatch

    assert mismatch is not None and mismatch.kind is MismatchKind.PROJECTION
    assert verify_user("user-2", [], None).mismatch is None


def test_a_reduction_that_does_not_follow_the_amount_due_is_a_projection_mismatch_at_its_entry():
    # Entries chained as the ledger would, but the reduction starts from an amount the obligation
    # never had: its hash is right, its fact cannot follow the facts before it.
    events = [
        ObligationCreated("o", "CNY", 1_000, 9, "fee", "", "", 1),
        ObligationReduced("o", 900, 600, "discount", 2),
    ]
    new_entries, _ = chain_events(
        ChainHead(), "user-1", events, request_id="r", request_hash="ab" * 32, recorded_at_us=5
    )
    entries = [JournalEntry.sequenced(entry, 1 + index) for index, entry in enumerate(new_entries)]

    mismatch = verify_user("user-1", entries, None).mismatch

    assert mismatch is not None
    assert (mismatch.kind, mismatch.user_sequence) == (MismatchKind.PROJECTION, 2)
