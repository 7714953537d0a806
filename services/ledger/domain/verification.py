"""Verification: recompute a user's chain and projection from the journal and compare.

Pure: the caller streams a user's entries (in user sequence order) and the stored projection in,
and gets back how many entries were checked and the first mismatch, if any.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from services.ledger.domain.codec import DecodeError
from services.ledger.domain.events import decode_event
from services.ledger.domain.journal import JournalEntry, recomputed_hash
from services.ledger.domain.projection import ProjectionError, apply
from services.ledger.domain.records import ChainHead, UserState


class MismatchKind(StrEnum):
    HASH = "HASH"
    PREVIOUS_HASH = "PREVIOUS_HASH"
    SEQUENCE = "SEQUENCE"
    PROJECTION = "PROJECTION"


@dataclass(frozen=True, slots=True)
class ChainMismatch:
    kind: MismatchKind
    user_id: str
    # Both 0 when a stored projection differs from the rebuild (no single entry is at fault).
    user_sequence: int
    global_sequence: int
    detail: str

    def sort_key(self) -> tuple[int, int, str]:
        """Earlier in the journal first; projection mismatches after every entry mismatch."""
        if self.global_sequence > 0:
            return (0, self.global_sequence, self.user_id)
        return (1, 0, self.user_id)


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
        apply(rebuilt, decode_event(entry.entry_type, json.loads(entry.payload_json)))
    except (DecodeError, ProjectionError, ValueError) as error:
        return mismatch(MismatchKind.PROJECTION, f"entry cannot be applied: {error}")
    rebuilt.chain = ChainHead(user_sequence=entry.user_sequence, hash=entry.hash)
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
