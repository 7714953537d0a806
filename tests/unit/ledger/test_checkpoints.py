"""The checkpoints' Merkle tree is RFC 9162's; audit paths prove each leaf and no other; a
checkpoint holds against the heads it was made from and against no others."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import replace

import pytest

from services.ledger.domain.checkpoints import (
    LEDGER_USER_ID,
    ChainLeaf,
    Checkpoint,
    audit_path,
    merkle_root,
    proof_for,
    root_from_path,
    sorted_leaves,
)
from services.ledger.domain.verification import MismatchKind, checkpoint_mismatch


def rfc_9162_root(leaf_hashes: list[bytes]) -> bytes:
    """MTH as RFC 9162 defines it, recursively: split at the largest power of two below n."""
    if not leaf_hashes:
        return hashlib.sha256(b"").digest()
    if len(leaf_hashes) == 1:
        return leaf_hashes[0]
    split = 1
    while split * 2 < len(leaf_hashes):
        split *= 2
    left, right = rfc_9162_root(leaf_hashes[:split]), rfc_9162_root(leaf_hashes[split:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def leaves(count: int) -> list[ChainLeaf]:
    return [ChainLeaf(f"user-{i:03d}", i + 1, f"{i:064x}") for i in range(count)]


@pytest.mark.parametrize("count", [0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_the_root_is_rfc_9162s(count):
    hashes = [leaf.leaf_hash() for leaf in leaves(count)]

    assert merkle_root(hashes) == rfc_9162_root(hashes)


@pytest.mark.parametrize("count", [1, 2, 3, 5, 6, 8, 11, 32, 37])
def test_every_leafs_path_leads_to_the_root_and_not_from_another_place(count):
    hashes = [leaf.leaf_hash() for leaf in leaves(count)]
    root = merkle_root(hashes)

    for index in range(count):
        path = audit_path(hashes, index)
        assert root_from_path(hashes[index], index, count, path) == root
        for wrong_index in {(index + 1) % count, count - 1 - index} - {index}:
            with contextlib.suppress(ValueError):
                assert root_from_path(hashes[index], wrong_index, count, path) != root


def test_a_leaf_hash_covers_every_field_of_the_head():
    leaf = ChainLeaf("user-1", 3, "a" * 64)

    assert (
        len(
            {leaf.leaf_hash()}
            | {
                replace(leaf, user_id="user-2").leaf_hash(),
                replace(leaf, user_sequence=4).leaf_hash(),
                replace(leaf, head_hash="b" * 64).leaf_hash(),
            }
        )
        == 4
    )


def test_leaves_are_in_ascii_order_without_the_ledgers_own_chain():
    unordered = [
        ChainLeaf("b", 1, "0" * 64),
        ChainLeaf(LEDGER_USER_ID, 4, "0" * 64),
        ChainLeaf("B", 1, "0" * 64),
        ChainLeaf("a-1", 1, "0" * 64),
    ]

    assert [leaf.user_id for leaf in sorted_leaves(unordered)] == ["B", "a-1", "b"]


def signed_checkpoint(heads: list[ChainLeaf], global_sequence: int = 9) -> Checkpoint:
    ordered = sorted_leaves(heads)
    return Checkpoint(
        checkpoint_sequence=1,
        global_sequence=global_sequence,
        user_count=len(ordered),
        merkle_root=merkle_root([leaf.leaf_hash() for leaf in ordered]).hex(),
        signed_at_us=1,
        key_id="0" * 16,
        signature="0" * 128,
    )


def test_a_checkpoint_holds_against_its_heads_in_any_order():
    heads = leaves(6)
    checkpoint = signed_checkpoint(heads)

    mismatch = checkpoint_mismatch(
        checkpoint,
        signature_valid=True,
        journal_head_global_sequence=9,
        heads_at_checkpoint=[*list(reversed(heads)), ChainLeaf(LEDGER_USER_ID, 1, "f" * 64)],
    )

    assert mismatch is None


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"signature_valid": False}, "signature"),
        ({"journal_head_global_sequence": 8}, "covers global sequence 9"),
        ({"heads_at_checkpoint": leaves(5)}, "Merkle roots differ"),
        ({"heads_at_checkpoint": [*leaves(5), ChainLeaf("user-005", 6, "f" * 64)]}, "differ"),
    ],
    ids=["bad signature", "beyond the journal", "a user less", "a rewritten head"],
)
def test_a_checkpoint_does_not_hold_against_anything_else(change, detail):
    heads = leaves(6)
    arguments = {
        "signature_valid": True,
        "journal_head_global_sequence": 9,
        "heads_at_checkpoint": heads,
    } | change

    mismatch = checkpoint_mismatch(signed_checkpoint(heads), **arguments)

    assert mismatch is not None
    assert (mismatch.kind, mismatch.user_id, mismatch.global_sequence) == (
        MismatchKind.CHECKPOINT,
        "",
        9,
    )
    assert detail in mismatch.detail


def test_the_signed_bytes_cover_every_field_but_the_signature():
    checkpoint = signed_checkpoint(leaves(2))
    changed = [
        replace(checkpoint, checkpoint_sequence=2),
        replace(checkpoint, global_sequence=10),
        replace(checkpoint, user_count=3),
        replace(checkpoint, merkle_root="1" * 64),
        replace(checkpoint, signed_at_us=2),
        replace(checkpoint, key_id="1" * 16),
    ]

    assert len({checkpoint.signed_bytes(), *(c.signed_bytes() for c in changed)}) == 7
    assert replace(checkpoint, signature="1" * 128).signed_bytes() == checkpoint.signed_bytes()


def test_a_proof_for_each_user_leads_to_the_root_and_none_for_a_stranger():
    heads = leaves(5)
    checkpoint = signed_checkpoint(heads)

    for head in heads:
        proof = proof_for(checkpoint, heads, head.user_id)
        assert proof is not None and proof.leaf == head
        assert proof.leads_to_the_root()
        assert not replace(proof, leaf=replace(head, user_sequence=99)).leads_to_the_root()
    assert proof_for(checkpoint, heads, "stranger") is None
