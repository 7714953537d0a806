"""Verification: recompute a user's chain and projection from the journal and compare.

Pure: the caller streams a user's entries (in user sequence order) and the stored projection in,
and gets back how many entries were checked and the first mismatch, if any.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from services.ledger.domain.checkpoints import (
    ChainLeaf,
    Checkpoint,
    checkpoint_request,
    merkle_root,
    sorted_leaves,
)
from services.ledger.domain.codec import DecodeError
from services.ledger.domain.events import CheckpointSigned, Event, HoldExpired, decode_event
from services.ledger.domain.journal import JournalEntry, expiry_request, recomputed_hash
from services.ledger.domain.projection import ProjectionError, apply
from services.ledger.domain.records import ChainHead, UserState


class MismatchKind(StrEnum):
    HASH = "HASH"
    PREVIOUS_HASH = "PREVIOUS_HASH"
    SEQUENCE = "SEQUENCE"
    PROJECTION = "PROJECTION"
    REQUEST_RECORD = "REQUEST_RECORD"
    CHECKPOINT = "CHECKPOINT"


@dataclass(frozen=True, slots=True)
class ChainMismatch:
    kind: MismatchKind
    user_id: str
    # Both 0 when a stored projection differs from the rebuild (no single entry is at fault).
    user_sequence: int
    global_sequence: int
    detail: str

    def sort_key(self) -> tuple[int, int, str]:
        """Earlier in the journal first; projection mismatches after every entry mismatch, and
        a request record naming entries that do not exist (no user, no entry) last."""
        if self.global_sequence > 0:
            return (0, self.global_sequence, self.user_id)
        return (1 if self.user_id else 2, 0, self.user_id)


def first_of(*mismatches: ChainMismatch | None) -> ChainMismatch | None:
    """The mismatch to report of several found: the first by `ChainMismatch.sort_key`."""
    found = [mismatch for mismatch in mismatches if mismatch is not None]
    return min(found, key=ChainMismatch.sort_key) if found else None


@dataclass(frozen=True, slots=True)
class UserVerification:
    entries_checked: int
    mismatch: ChainMismatch | None


@dataclass(frozen=True, slots=True)
class VerificationReport:
    users_checked: int
    entries_checked: int
    first_mismatch: ChainMismatch | None

    @property
    def intact(self) -> bool:
        return self.first_mismatch is None


def verify_user(
    user_id: str, entries: Iterable[JournalEntry], stored: UserState | None
) -> UserVerification:
    """Checks a user's chain link by link, then the stored projection against the rebuild.

    `stored` is the user's whole stored projection, or None when the user has no account row.
    Only the first mismatch is reported: after a broken link the rebuild means little.
    """
    rebuilt = UserState.empty(user_id)
    entries_checked = 0
    mismatch: ChainMismatch | None = None
    for entry in entries:
        assert entry.user_id == user_id, "entries are grouped by user"
        entries_checked += 1
        if mismatch is None:
            mismatch = _check_entry(rebuilt, entry)
    if mismatch is None:
        difference = _projection_difference(rebuilt, stored)
        if difference is not None:
            mismatch = ChainMismatch(MismatchKind.PROJECTION, user_id, 0, 0, difference)
    return UserVerification(entries_checked, mismatch)


def _check_entry(rebuilt: UserState, entry: JournalEntry) -> ChainMismatch | None:
    """Checks one entry against the chain so far and applies it; the mismatch if any."""

    def mismatch(kind: MismatchKind, detail: str) -> ChainMismatch:
        return ChainMismatch(
            kind, entry.user_id, entry.user_sequence, entry.global_sequence, detail
        )

    expected_sequence = rebuilt.chain.user_sequence + 1
    if entry.user_sequence != expected_sequence:
        return mismatch(
            MismatchKind.SEQUENCE,
            f"user sequence {entry.user_sequence} where {expected_sequence} was expected",
        )
    if entry.previous_hash != rebuilt.chain.hash:
        return mismatch(MismatchKind.PREVIOUS_HASH, "previous_hash is not the prior entry's hash")
    try:
        expected_hash = recomputed_hash(entry)
    except ValueError:
        return mismatch(MismatchKind.HASH, "previous_hash is not a hash")
    if entry.hash != expected_hash:
        return mismatch(MismatchKind.HASH, "hash differs from the hash of the entry's content")
    try:
        event = decode_event(entry.entry_type, json.loads(entry.payload_json))
        apply(rebuilt, event)
    except (DecodeError, ProjectionError, ValueError) as error:
        return mismatch(MismatchKind.PROJECTION, f"entry cannot be applied: {error}")
    problem = _own_entry_problem(entry, event)
    if problem is not None:
        return mismatch(MismatchKind.REQUEST_RECORD, problem)
    rebuilt.chain = ChainHead(user_sequence=entry.user_sequence, hash=entry.hash)
    return None


def _own_entry_problem(entry: JournalEntry, event: Event) -> str | None:
    """An entry of the ledger's own has no request record: it must say that it is one."""
    if isinstance(event, HoldExpired):
        if (entry.request_id, entry.request_hash) != expiry_request(event.hold_id):
            return (
                f"expiry of hold {event.hold_id} carries request {entry.request_id!r}, not the"
                " sweeper's"
            )
    elif isinstance(event, CheckpointSigned):
        if event.checkpoint_sequence != entry.user_sequence:
            return f"checkpoint {event.checkpoint_sequence} is not the chain's entry of its number"
        if (entry.request_id, entry.request_hash) != checkpoint_request(entry.user_sequence):
            return f"checkpoint {event.checkpoint_sequence} carries request {entry.request_id!r}"
    return None


def _projection_difference(rebuilt: UserState, stored: UserState | None) -> str | None:
    """A description of the first stored record that differs from the rebuild, or None."""
    if stored is None:
        has_entries = rebuilt.chain.user_sequence > 0
        return "account row is missing" if has_entries else None
    if rebuilt.chain != stored.chain:
        return f"account {rebuilt.user_id}: chain head differs from the journal"
    field = _first_differing_field(rebuilt.account, stored.account)
    if field is not None:
        return f"account {rebuilt.user_id}: {field} differs from the journal"
    for kind, rebuilt_records, stored_records in (
        ("hold", rebuilt.holds, stored.holds),
        ("obligation", rebuilt.obligations, stored.obligations),
        ("statement", rebuilt.statements, stored.statements),
    ):
        difference = _records_difference(kind, rebuilt_records, stored_records)
        if difference is not None:
            return difference
    if rebuilt.credit_line != stored.credit_line:
        if rebuilt.credit_line is None or stored.credit_line is None:
            return f"credit line of {rebuilt.user_id}: present on one side only"
        field = _first_differing_field(rebuilt.credit_line, stored.credit_line)
        return f"credit line of {rebuilt.user_id}: {field} differs from the journal"
    return None


def _records_difference(
    kind: str, rebuilt: Mapping[Any, Any], stored: Mapping[Any, Any]
) -> str | None:
    for key in sorted(rebuilt.keys() | stored.keys(), key=str):
        if key not in stored:
            return f"{kind} {key}: in the journal but not in the projection"
        if key not in rebuilt:
            return f"{kind} {key}: in the projection but not in the journal"
        field = _first_differing_field(rebuilt[key], stored[key])
        if field is not None:
            return f"{kind} {key}: {field} differs from the journal"
    return None


def _first_differing_field(rebuilt: object, stored: object) -> str | None:
    if rebuilt == stored:
        return None
    assert dataclasses.is_dataclass(rebuilt) and not isinstance(rebuilt, type)
    for field in dataclasses.fields(rebuilt):
        if getattr(rebuilt, field.name) != getattr(stored, field.name):
            return field.name
    return "a field"


# ----------------------------------------------------------------------------------------------
# Request records against the journal
#
# The rule: every entry that is not the ledger's own (`journal.OWN_ENTRY_TYPES`) was written by
# a request that succeeded, and that request's record exists, carries the entries' request hash,
# and names exactly as many entries as carry its request id (across every user: a partner
# statement batch writes entries for many). A refusal's record names none, and so does a
# success that changed nothing (an identical partner report).


@dataclass(frozen=True, slots=True)
class RequestEntries:
    """One request id as storage found it in the journal and in the request records."""

    request_id: str
    # The entries that carry the id (the ledger's own aside): how many, the distinct request
    # hashes among them, and the first one's (user id, user sequence, global sequence).
    entry_count: int
    entry_request_hashes: frozenset[str]
    first_entry: tuple[str, int, int] | None
    # The record: None when there is none; else its request hash and the entries it names.
    record: tuple[str, int] | None


def request_record_mismatch(found: RequestEntries, *, every_user: bool) -> ChainMismatch | None:
    """What is wrong between a request's record and its entries, or None.

    With `every_user` false the entries are one user's only, so the record may name more
    (another user's, in a partner statement batch) but never fewer.
    """
    detail = _request_record_problem(found, every_user)
    if detail is None:
        return None
    user_id, user_sequence, global_sequence = found.first_entry or ("", 0, 0)
    return ChainMismatch(
        MismatchKind.REQUEST_RECORD, user_id, user_sequence, global_sequence, detail
    )


def _request_record_problem(found: RequestEntries, every_user: bool) -> str | None:
    request = f"request {found.request_id!r}"
    if found.record is None:
        if found.entry_count == 0:
            return None
        return f"{found.entry_count} entries carry {request}, which has no request record"
    record_hash, record_entry_count = found.record
    if found.entry_request_hashes - {record_hash}:
        return f"the entries of {request} carry another request_hash than its record"
    fewer_named = found.entry_count > record_entry_count
    if fewer_named or (every_user and found.entry_count != record_entry_count):
        return (
            f"{found.entry_count} entries carry {request}, whose record names {record_entry_count}"
        )
    return None


# ----------------------------------------------------------------------------------------------
# A signed checkpoint against the journal


def checkpoint_mismatch(
    checkpoint: Checkpoint,
    *,
    signature_valid: bool,
    journal_head_global_sequence: int,
    heads_at_checkpoint: Sequence[ChainLeaf],
) -> ChainMismatch | None:
    """What is wrong between a checkpoint and the journal, or None.

    `heads_at_checkpoint` are the users' last entries (as stored) at or before the checkpoint's
    global sequence. The root names no user, so neither can the mismatch: it is reported at the
    global sequence the checkpoint covers.
    """
    number, covered = checkpoint.checkpoint_sequence, checkpoint.global_sequence

    def found(detail: str) -> ChainMismatch:
        return ChainMismatch(
            MismatchKind.CHECKPOINT, "", 0, covered, f"checkpoint {number}: {detail}"
        )

    if not signature_valid:
        return found("its signature does not verify with the ledger's key")
    if covered > journal_head_global_sequence:
        return found(
            f"it covers global sequence {covered}, but the journal holds"
            f" {journal_head_global_sequence}"
        )
    leaves = sorted_leaves(heads_at_checkpoint)
    root = merkle_root([leaf.leaf_hash() for leaf in leaves]).hex()
    if root != checkpoint.merkle_root or len(leaves) != checkpoint.user_count:
        return found(
            f"the chain heads of the {len(leaves)} users at global sequence {covered} differ"
            f" from the {checkpoint.user_count} it signed (the Merkle roots differ)"
        )
    return None
