"""What the service layer needs from storage. `services.ledger.storage` implements it over SQL
databases (see `sql_storage`); tests may implement it in memory.

A write transaction is atomic: the context manager commits when the block ends normally and
rolls back when it raises. Storage turns the races it cannot order for us (deadlocks,
serialization failures, a concurrent insert of the same request id, a busy database) into
`StorageConflict`, and the service reruns the whole transaction.

Inside the block, a write transaction is used in one order: `lock` first; then any of the
loads; then, last, `persist`, which may commit. A transaction that changed nothing skips
`persist` and leaves the commit to the context manager.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from services.ledger.domain.checkpoints import ChainLeaf, Checkpoint
from services.ledger.domain.journal import JournalEntry, NewEntry
from services.ledger.domain.records import (
    Account,
    ChainHead,
    CreditLine,
    Hold,
    Obligation,
    Statement,
    UserState,
)
from services.ledger.domain.verification import RequestEntries


class StorageConflict(Exception):
    """The transaction lost a race and was rolled back; running it again may succeed."""


class RequestOutcome(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """A mutation's idempotency record: what was asked (by hash) and what was answered."""

    request_id: str
    request_hash: str
    method: str
    outcome: RequestOutcome
    # Canonical JSON of the result when SUCCEEDED; empty when FAILED.
    response_json: str
    # The business error when FAILED; empty when SUCCEEDED.
    error_reason: str
    error_message: str
    recorded_at_us: int
    # How many journal entries the request wrote (each carries its request id); 0 when FAILED.
    entry_count: int = 0


@dataclass(slots=True)
class StateChanges:
    """The projection rows one write inserts or updates (the journal aside)."""

    # Account rows always exist by the time a write changes them (`WriteTransaction.lock`
    # creates them).
    accounts: list[tuple[Account, ChainHead]] = field(default_factory=list)
    new_holds: list[Hold] = field(default_factory=list)
    changed_holds: list[Hold] = field(default_factory=list)
    # Holds that left OPEN in this write: each gets its one resolution row.
    resolved_holds: list[Hold] = field(default_factory=list)
    new_obligations: list[Obligation] = field(default_factory=list)
    changed_obligations: list[Obligation] = field(default_factory=list)
    new_statements: list[Statement] = field(default_factory=list)
    changed_statements: list[Statement] = field(default_factory=list)
    new_credit_lines: list[CreditLine] = field(default_factory=list)
    changed_credit_lines: list[CreditLine] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not any(getattr(self, name) for name in self.__slots__)


@dataclass(frozen=True, slots=True)
class JournalSize:
    """How many entries the journal holds and the last global sequence its head allocated;
    equal in an intact journal, because sequences are gap-free."""

    entry_count: int
    head_global_sequence: int


@dataclass(slots=True)
class Locked:
    """What a write transaction locked, and the stored answers to its requests."""

    holds: list[Hold]
    obligations: list[Obligation]
    # The accounts (and chain heads) of the users named and of the holds' and obligations'
    # owners; nothing else of their state is loaded yet.
    states: dict[str, UserState]
    requests: dict[str, StoredRequest]


class WriteTransaction(Protocol):
    def lock(
        self,
        hold_ids: Sequence[str],
        obligation_ids: Sequence[str],
        user_ids: Sequence[str],
        request_ids: Sequence[str],
    ) -> Locked:
        """The transaction's first step: locks the holds and obligations that exist, then the
        accounts of the users named and of those records' owners (creating missing accounts),
        then looks up the requests' stored records.

        Every writer locks in this order, each kind in sorted key order, so that two writers
        never wait for each other in a cycle: holds, obligations, accounts. Each id list is
        sorted and without repeats. Nothing runs in the transaction before this step, so an
        implementation may begin the transaction with it."""
        ...

    def load_open_holds(self, user_id: str) -> list[Hold]: ...

    def load_statements(self, user_ids: Sequence[str]) -> list[Statement]: ...

    def load_credit_lines(self, user_ids: Sequence[str]) -> list[CreditLine]: ...

    def persist(
        self,
        changes: StateChanges,
        requests: Sequence[StoredRequest],
        entries: Sequence[NewEntry],
    ) -> None:
        """The transaction's last step: writes the changed projections and the request records,
        then appends the entries, allocating their global sequences. Nothing runs in the
        transaction after it, so an implementation may commit with it; the context manager's
        commit then has nothing left to do. The journal head stays locked from the allocation
        until commit, so commits happen in sequence order and a reader never sees sequence n+1
        before n."""
        ...


class ReadTransaction(Protocol):
    """Reads from one consistent snapshot."""

    def get_account(self, user_id: str) -> tuple[Account, ChainHead] | None: ...

    def open_holds_summary(self, user_id: str, now_us: int) -> tuple[int, int]:
        """The total and count of the user's open holds not expired at `now_us`."""
        ...

    def get_hold(self, hold_id: str) -> Hold | None: ...

    def get_obligation(self, obligation_id: str) -> Obligation | None: ...

    def get_credit_line(self, user_id: str) -> CreditLine | None: ...

    def statements_ended_by(self, user_id: str, as_of_us: int, limit: int) -> list[Statement]:
        """Statements whose month ended by `as_of_us`, newest period first."""
        ...

    def obligations_created_by(
        self, user_id: str, as_of_us: int, limit: int
    ) -> list[Obligation]: ...

    def global_sequence_of(self, user_id: str, user_sequence: int) -> int: ...

    def entries_after(self, after_global_sequence: int, limit: int) -> list[JournalEntry]: ...

    def user_entries_after(
        self, user_id: str, after_user_sequence: int, limit: int
    ) -> list[JournalEntry]: ...

    def expired_open_holds(self, now_us: int, limit: int) -> list[tuple[str, str]]:
        """(hold_id, user_id) of open holds past their expiry, earliest expiry first."""
        ...

    def users_after(self, after_user_id: str, limit: int) -> list[str]:
        """Users with an account row or a journal entry, in user id order."""
        ...

    def entries_of_users(self, user_ids: Sequence[str]) -> Iterator[JournalEntry]:
        """Every entry of the users, by user id then user sequence."""
        ...

    def stored_states(self, user_ids: Sequence[str]) -> dict[str, UserState]:
        """The users' whole stored projections (users without an account row are absent)."""
        ...

    def journal_size(self) -> JournalSize: ...

    def first_request_disagreement(self, user_id: str | None) -> RequestEntries | None:
        """The request, earliest in the journal, whose record may disagree with the entries
        that carry its id: that user's entries, or (None) every entry and record."""
        ...

    def head_global_sequence(self) -> int:
        """The last global sequence the journal allocated."""
        ...

    def account_chain_heads(self) -> list[ChainLeaf]:
        """Every user's chain head as the accounts store it (users with entries only)."""
        ...

    def chain_heads_at(self, global_sequence: int) -> list[ChainLeaf]:
        """Every user's last entry at or before `global_sequence`, as the journal stores it."""
        ...

    def checkpoint_entry(self, checkpoint_sequence: int) -> JournalEntry | None:
        """The entry of the ledger's checkpoint of that number; 0 means the latest."""
        ...


class CheckpointSigner(Protocol):
    """Signs checkpoints with the ledger's key; `key_id` names the key's public half."""

    key_id: str

    def sign(self, message: bytes) -> bytes: ...


class CheckpointVerifier(Protocol):
    """Checks a checkpoint's signature against the ledger's public key."""

    key_id: str

    def verify(self, signature: bytes, message: bytes) -> bool: ...


class CheckpointLog(Protocol):
    """Where checkpoints are kept outside the database, in the order they were signed."""

    def append(self, checkpoint: Checkpoint) -> None: ...


class LedgerStorage(Protocol):
    # How many write transactions are worth running at once: 1 where the database runs one
    # writer at a time, more where it overlaps one's commit with another's reads.
    write_concurrency: int

    def write(self) -> AbstractContextManager[WriteTransaction]: ...

    def read(self) -> AbstractContextManager[ReadTransaction]: ...

    def close(self) -> None: ...
