"""Signed checkpoints: what anchors the journal outside the database.

A hash chain shows that a user's entries follow each other, but not that they are the entries
the ledger wrote: someone who can write to the database can rewrite a user's history and
recompute every later hash and the account's head, and every chain still verifies. A checkpoint
is the ledger's signed statement of every user's chain head at one global sequence, kept where
the database's writers cannot reach (an append-only log, and whoever read it off the entry
stream); rewriting history then also needs the signing key.

The heads are the leaves of a Merkle tree, so one user's head can be proven against a checkpoint
with a path of about log2(users) hashes, without the other users' heads. The tree is RFC 9162's
(Certificate Transparency): leaves in user id order, a leaf's hash SHA-256(0x00 || leaf), an
inner node's SHA-256(0x01 || left || right), the root of an empty tree SHA-256 of nothing. A
leaf is the canonical JSON {"hash":H,"user_id":U,"user_sequence":S} of the user's last entry at
or before the checkpoint's global sequence; users with no entry by then are not in the tree.

The ledger's own chains (user ids beginning with "$", which no client may write) are not in the
tree: the checkpoints themselves are journaled on the chain of `LEDGER_USER_ID`, one entry each,
its user sequence being the checkpoint's sequence number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from itertools import pairwise

from services.ledger.domain.canonical import canonical_bytes, request_hash
from services.ledger.domain.codec import Plain

# The chain the ledger journals its checkpoints on; "$" begins every id the ledger reserves.
RESERVED_USER_PREFIX = "$"
LEDGER_USER_ID = "$ledger"
CHECKPOINT_METHOD = "SignCheckpoint"
# Prefixed to what is signed, so that a checkpoint's signature can never be taken for a
# signature over anything else made with the same key.
SIGNATURE_CONTEXT = b"sesame.ledger.v1.Checkpoint\n"
HASH_HEX_LENGTH = 64
SIGNATURE_HEX_LENGTH = 128
KEY_ID_HEX_LENGTH = 16

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def is_reserved_user(user_id: str) -> bool:
    """Whether the id belongs to one of the ledger's own chains."""
    return user_id.startswith(RESERVED_USER_PREFIX)


@dataclass(frozen=True, slots=True, order=True)
class ChainLeaf:
    """One user's chain head at a checkpoint: the leaf the Merkle tree is built from."""

    user_id: str
    user_sequence: int
    head_hash: str

    def leaf_hash(self) -> bytes:
        leaf: Plain = {
            "hash": self.head_hash,
            "user_id": self.user_id,
            "user_sequence": self.user_sequence,
        }
        return hashlib.sha256(_LEAF_PREFIX + canonical_bytes(leaf)).digest()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The ledger's signed statement that, once the journal held `global_sequence` entries,
    the Merkle root of every user's chain head was `merkle_root`."""

    checkpoint_sequence: int
    global_sequence: int
    user_count: int
    # Lower-case hex.
    merkle_root: str
    signed_at_us: int
    key_id: str
    # Ed25519 over `signed_bytes()`, lower-case hex; empty until signed.
    signature: str = ""

    def signed_bytes(self) -> bytes:
        """What the signature covers: every field but the signature, as canonical JSON."""
        body: Plain = {
            field.name: getattr(self, field.name)
            for field in fields(self)
            if field.name != "signature"
        }
        return SIGNATURE_CONTEXT + canonical_bytes(body)


def checkpoint_request(checkpoint_sequence: int) -> tuple[str, str]:
    """The request id and hash a checkpoint's entry is journaled under (it has no record)."""
    return (
        f"checkpoint:{checkpoint_sequence}",
        request_hash(CHECKPOINT_METHOD, {"checkpoint_sequence": checkpoint_sequence}),
    )


# ----------------------------------------------------------------------------------------------
# The Merkle tree (RFC 9162, section 2.1)


def sorted_leaves(leaves: Sequence[ChainLeaf]) -> list[ChainLeaf]:
    """The leaves in tree order: by user id, compared as the ASCII text it is (not in a
    database's collation), the ledger's own chains left out."""
    kept = [leaf for leaf in leaves if not is_reserved_user(leaf.user_id)]
    kept.sort(key=lambda leaf: leaf.user_id.encode("utf-8"))
    assert all(a.user_id != b.user_id for a, b in pairwise(kept)), "one leaf per user"
    return kept


def merkle_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The root over the leaves' hashes, in order."""
    if not leaf_hashes:
        return hashlib.sha256(b"").digest()
    level = list(leaf_hashes)
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def audit_path(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The sibling hashes from the leaf at `index` up to the root, lowest first."""
    assert 0 <= index < len(leaf_hashes)
    path: list[bytes] = []
    level = list(leaf_hashes)
    while len(level) > 1:
        sibling = index ^ 1
        # The last node of an odd level has no sibling: it moves up as it is.
        if sibling < len(level):
            path.append(level[sibling])
        level = _next_level(level)
        index //= 2
    return path


def root_from_path(leaf_hash: bytes, index: int, tree_size: int, path: Sequence[bytes]) -> bytes:
    """The root a leaf and its audit path lead to (RFC 9162, 2.1.3.2); raises ValueError when
    the path cannot belong to a leaf at `index` of a tree of `tree_size` leaves."""
    if not 0 <= index < tree_size:
        raise ValueError("the leaf index lies outside the tree")
    node, last = index, tree_size - 1
    root = leaf_hash
    for sibling in path:
        if last == 0:
            raise ValueError("the path is longer than the tree is high")
        if node % 2 == 1 or node == last:
            root = _node(sibling, root)
            if node % 2 == 0:
                while node % 2 == 0 and node != 0:
                    node //= 2
                    last //= 2
        else:
            root = _node(root, sibling)
        node //= 2
        last //= 2
    if last != 0:
        raise ValueError("the path is shorter than the tree is high")
    return root


def _next_level(level: list[bytes]) -> list[bytes]:
    paired = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2 == 1:
        paired.append(level[-1])
    return paired


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


@dataclass(frozen=True, slots=True)
class CheckpointProof:
    """That one user's chain head is a leaf of a checkpoint's tree: the leaf, its place, and
    the sibling hashes (hex, lowest first) from it up to the root."""

    checkpoint: Checkpoint
    leaf: ChainLeaf
    leaf_index: int
    tree_size: int
    audit_path: tuple[str, ...]

    def leads_to_the_root(self) -> bool:
        """Whether the leaf and its path lead to the checkpoint's Merkle root (the checkpoint's
        signature is the caller's to check)."""
        try:
            path = [bytes.fromhex(sibling) for sibling in self.audit_path]
            root = root_from_path(self.leaf.leaf_hash(), self.leaf_index, self.tree_size, path)
        except ValueError:
            return False
        return self.tree_size == self.checkpoint.user_count and root.hex() == (
            self.checkpoint.merkle_root
        )


def proof_for(
    checkpoint: Checkpoint, leaves: Sequence[ChainLeaf], user_id: str
) -> CheckpointProof | None:
    """The proof of the user's leaf among `leaves` (the heads at the checkpoint's global
    sequence); None when the user had no entry by then."""
    ordered = sorted_leaves(leaves)
    index = next((i for i, leaf in enumerate(ordered) if leaf.user_id == user_id), None)
    if index is None:
        return None
    path = audit_path([leaf.leaf_hash() for leaf in ordered], index)
    return CheckpointProof(
        checkpoint=checkpoint,
        leaf=ordered[index],
        leaf_index=index,
        tree_size=len(ordered),
        audit_path=tuple(sibling.hex() for sibling in path),
    )
