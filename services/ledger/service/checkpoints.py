"""Signing checkpoints, off the request path (see `domain.checkpoints` for what they are).

A round: read, from one snapshot, the journal's last global sequence and every user's chain head
as the accounts store it (a snapshot sees a write's entries and its account rows together, so
the heads are exactly those at that sequence); build the Merkle tree and sign; then, in a write
transaction of its own that locks only the ledger's own account, journal the checkpoint on the
ledger's chain; and append it to the log outside the database. No write waits for the tree: the
journal head is locked only by the one-entry append, as for any write.

A round signs nothing when nothing but checkpoints was journaled since the last checkpoint, and
gives way when another process journaled one since its snapshot (several ledger processes may
share a database: the ledger's account lock orders them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import structlog

from services.common.clock import Clock
from services.common.periodic import PeriodicTask
from services.ledger.domain.checkpoints import (
    LEDGER_USER_ID,
    ChainLeaf,
    Checkpoint,
    checkpoint_request,
    merkle_root,
    sorted_leaves,
)
from services.ledger.domain.events import CheckpointSigned
from services.ledger.domain.journal import JournalEntry, entry_event
from services.ledger.service.notifier import EntryNotifier
from services.ledger.service.ports import CheckpointLog, CheckpointSigner, LedgerStorage
from services.ledger.service.retry import RetryPolicy, with_retries
from services.ledger.service.write_unit import WriteUnit

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class _Snapshot:
    head_global_sequence: int
    leaves: list[ChainLeaf]
    # The latest checkpoint's entry, if any.
    latest: JournalEntry | None


class Checkpointer:
    """Signs a checkpoint of every user's chain head, journals it and appends it to the log."""

    def __init__(
        self,
        storage: LedgerStorage,
        clock: Clock,
        signer: CheckpointSigner,
        checkpoint_log: CheckpointLog,
        notifier: EntryNotifier,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._signer = signer
        self._log = checkpoint_log
        self._notifier = notifier
        self._retry = retry or RetryPolicy()

    def sign_checkpoint(self) -> Checkpoint | None:
        """One round; the checkpoint signed, or None when there was nothing new to sign."""
        snapshot = self._snapshot()
        latest = snapshot.latest
        if latest is not None and latest.global_sequence >= snapshot.head_global_sequence:
            return None
        leaves = sorted_leaves(snapshot.leaves)
        unsigned = Checkpoint(
            checkpoint_sequence=(latest.user_sequence if latest is not None else 0) + 1,
            global_sequence=snapshot.head_global_sequence,
            user_count=len(leaves),
            merkle_root=merkle_root([leaf.leaf_hash() for leaf in leaves]).hex(),
            signed_at_us=self._clock.now_us(),
            key_id=self._signer.key_id,
        )
        checkpoint = replace(unsigned, signature=self._signer.sign(unsigned.signed_bytes()).hex())
        if not with_retries(self._retry, lambda: self._journal(checkpoint)):
            return None
        self._notifier.published()
        self._log.append(checkpoint)
        log.info(
            "checkpoint_signed",
            checkpoint_sequence=checkpoint.checkpoint_sequence,
            global_sequence=checkpoint.global_sequence,
            user_count=checkpoint.user_count,
        )
        return checkpoint

    def _snapshot(self) -> _Snapshot:
        with self._storage.read() as reader:
            return _Snapshot(
                head_global_sequence=reader.head_global_sequence(),
                leaves=reader.account_chain_heads(),
                latest=reader.checkpoint_entry(0),
            )

    def _journal(self, checkpoint: Checkpoint) -> bool:
        """Journals the checkpoint as the next entry of the ledger's chain; False when another
        process journaled one since the snapshot (its number is then taken)."""
        with self._storage.write() as transaction:
            unit = WriteUnit(transaction, self._clock.now_us())
            unit.lock(user_ids=(LEDGER_USER_ID,))
            chain = unit.state(LEDGER_USER_ID).chain
            if chain.user_sequence + 1 != checkpoint.checkpoint_sequence:
                return False
            request_id, request_hash = checkpoint_request(checkpoint.checkpoint_sequence)
            unit.record(
                LEDGER_USER_ID,
                [_event(checkpoint)],
                request_id=request_id,
                request_hash=request_hash,
            )
            unit.persist()
        return True


class CheckpointTask:
    """Signs a checkpoint every interval on a daemon thread until stopped."""

    def __init__(self, checkpointer: Checkpointer, interval_s: float) -> None:
        self._task = PeriodicTask("checkpointer", interval_s, checkpointer.sign_checkpoint)

    def start(self) -> None:
        self._task.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._task.stop(timeout_s)


def checkpoint_of(entry: JournalEntry) -> Checkpoint | None:
    """The checkpoint a CHECKPOINT_SIGNED entry records; None for any other entry."""
    event = entry_event(entry)
    if not isinstance(event, CheckpointSigned):
        return None
    return Checkpoint(
        checkpoint_sequence=event.checkpoint_sequence,
        global_sequence=event.global_sequence,
        user_count=event.user_count,
        merkle_root=event.merkle_root,
        signed_at_us=event.signed_at_us,
        key_id=event.key_id,
        signature=event.signature,
    )


def _event(checkpoint: Checkpoint) -> CheckpointSigned:
    return CheckpointSigned(
        checkpoint_sequence=checkpoint.checkpoint_sequence,
        global_sequence=checkpoint.global_sequence,
        user_count=checkpoint.user_count,
        merkle_root=checkpoint.merkle_root,
        signed_at_us=checkpoint.signed_at_us,
        key_id=checkpoint.key_id,
        signature=checkpoint.signature,
    )
