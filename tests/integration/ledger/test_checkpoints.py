"""Signed checkpoints, on SQLite and PostgreSQL: signed, journaled on the entry stream and
appended to the log; VerifyChain holds the journal against them; a user's head is proven
against one; and a rewrite of a user's history that every hash chain survives does not survive
the latest checkpoint."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import grpc
import pytest
from sesame.ledger.v1 import ledger_service_pb2 as pb
from sqlalchemy import text

from services.ledger import admin
from services.ledger.adapters.checkpoint_keys import load_public_key
from services.ledger.adapters.checkpoint_log import read_latest_checkpoint
from services.ledger.domain.checkpoints import (
    LEDGER_USER_ID,
    ChainLeaf,
    Checkpoint,
    CheckpointProof,
)
from services.ledger.domain.journal import JournalEntry, recomputed_hash

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def key_files(checkpoint_key_files):
    return checkpoint_key_files


@pytest.fixture
def sign(client):
    return client.sign_checkpoint


@pytest.fixture
def history(client):
    """user-a: capacity (1), hold (2), capture (3); user-b: capacity (1), hold (2)."""
    client.set_capacity("user-a", 50_000)
    client.set_capacity("user-b", 50_000)
    hold = client.place_hold("user-a", 30_000)
    client.place_hold("user-b", 20_000)
    client.capture(hold.hold_id, 10_000)


def checkpoint_message(checkpoint: Checkpoint) -> pb.Checkpoint:
    return admin._checkpoint_message(checkpoint)


def checkpoint_from(message: pb.Checkpoint) -> Checkpoint:
    return Checkpoint(
        checkpoint_sequence=message.checkpoint_sequence,
        global_sequence=message.global_sequence,
        user_count=message.user_count,
        merkle_root=message.merkle_root,
        signed_at_us=message.sign_time.seconds * 1_000_000 + message.sign_time.nanos // 1000,
        key_id=message.key_id,
        signature=message.signature,
    )


def verify(client, checkpoint: Checkpoint | None, user_id: str = "") -> pb.VerifyChainResponse:
    request = pb.VerifyChainRequest(user_id=user_id)
    if checkpoint is not None:
        request.checkpoint.CopyFrom(checkpoint_message(checkpoint))
    return client.call("VerifyChain", request)


def entries_of(client, user_id: str = "") -> list[pb.Entry]:
    request = pb.ListEntriesRequest(user_id=user_id, page_size=1000)
    return list(client.call("ListEntries", request).entries)


# ----------------------------------------------------------------------------------------------
# Signing


def test_a_checkpoint_is_signed_journaled_and_appended_to_the_log(
    client, sign, history, key_files, checkpoint_log
):
    checkpoint = sign()

    assert checkpoint is not None
    assert (checkpoint.checkpoint_sequence, checkpoint.global_sequence) == (1, 5)
    assert checkpoint.user_count == 2
    public_key = load_public_key(key_files[1])
    assert checkpoint.key_id == public_key.key_id
    assert public_key.verify(bytes.fromhex(checkpoint.signature), checkpoint.signed_bytes())
    assert read_latest_checkpoint(checkpoint_log) == checkpoint
    [entry] = entries_of(client, LEDGER_USER_ID)
    assert (entry.type, entry.global_sequence, entry.user_sequence) == (
        pb.ENTRY_TYPE_CHECKPOINT_SIGNED,
        6,
        1,
    )
    assert entry.request_id == "checkpoint:1"
    assert checkpoint_from(entry.checkpoint_signed.checkpoint) == checkpoint


def test_nothing_new_signs_nothing_and_something_new_signs_the_next(client, sign, history):
    first = sign()

    assert sign() is None
    client.place_hold("user-b", 1_000)
    second = sign()

    assert second is not None
    assert (second.checkpoint_sequence, second.global_sequence) == (2, 7)
    assert second.merkle_root != first.merkle_root
    assert len(entries_of(client, LEDGER_USER_ID)) == 2


def test_the_entry_stream_delivers_a_checkpoint_after_every_entry_it_covers(
    client, stub, sign, history
):
    checkpoint = sign()
    received: list[pb.Entry] = []
    stream = stub.WatchEntries(pb.WatchEntriesRequest(after_global_sequence=0), timeout=10)

    def read() -> None:
        for response in stream:
            received.append(response.entry)
            if response.entry.type == pb.ENTRY_TYPE_CHECKPOINT_SIGNED:
                return

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(10)
    stream.cancel()

    assert [entry.global_sequence for entry in received] == [1, 2, 3, 4, 5, 6]
    assert received[-1].user_id == LEDGER_USER_ID
    assert checkpoint_from(received[-1].checkpoint_signed.checkpoint) == checkpoint


def test_the_ledgers_own_chain_takes_no_client_writes(client):
    request = client.place_hold_request(LEDGER_USER_ID, 100)

    code, reason, fields = client.rejection(lambda: client.call("PlaceHold", request))

    assert (code, reason, fields) == (INVALID, "ID_INVALID", ("user_id",))


# ----------------------------------------------------------------------------------------------
# Verifying against a checkpoint


def test_an_untouched_journal_verifies_against_its_checkpoints(client, sign, history):
    first = sign()
    client.place_hold("user-b", 1_000)
    latest = sign()

    for checkpoint in (first, latest):
        for user_id in ("", "user-a"):
            report = verify(client, checkpoint, user_id)
            assert report.intact, report.first_mismatch
    assert verify(client, None).users_checked == 3


def rewrite_history(database, is_postgresql, user_id: str, user_sequence: int) -> None:
    """The probe's attack: change one entry of a user (a capacity's reason, which no projection
    holds), recompute its hash and every later hash of the user, and set the account's head,
    directly in the database."""
    with database.begin() as connection:
        if is_postgresql:
            connection.execute(
                text("ALTER TABLE journal_entry DISABLE TRIGGER journal_entry_refuses_change")
            )
        else:
            connection.execute(text("DROP TRIGGER journal_entry_refuses_update"))
        rows = connection.execute(
            text("SELECT * FROM journal_entry WHERE user_id = :user ORDER BY user_sequence"),
            {"user": user_id},
        ).mappings()
        entries = [JournalEntry(**row) for row in rows]
        previous_hash = entries[user_sequence - 2].hash if user_sequence > 1 else "0" * 64
        for entry in entries[user_sequence - 1 :]:
            payload_json = entry.payload_json
            if entry.user_sequence == user_sequence:
                assert '"reason":"test"' in payload_json
                payload_json = payload_json.replace('"reason":"test"', '"reason":"rewritten"')
            rewritten = replace(entry, payload_json=payload_json, previous_hash=previous_hash)
            rewritten = replace(rewritten, hash=recomputed_hash(rewritten))
            connection.execute(
                text(
                    "UPDATE journal_entry SET payload_json = :payload, previous_hash = :previous,"
                    " hash = :hash WHERE global_sequence = :sequence"
                ),
                {
                    "payload": rewritten.payload_json,
                    "previous": rewritten.previous_hash,
                    "hash": rewritten.hash,
                    "sequence": rewritten.global_sequence,
                },
            )
            previous_hash = rewritten.hash
        connection.execute(
            text("UPDATE account SET last_hash = :hash WHERE user_id = :user"),
            {"hash": previous_hash, "user": user_id},
        )


def test_a_rewrite_every_chain_survives_is_reported_against_the_latest_checkpoint(
    client, database, is_postgresql, sign, history
):
    checkpoint = sign()
    rewrite_history(database, is_postgresql, "user-a", 1)

    # Every chain and projection still verifies: nothing inside the database anchors them.
    assert verify(client, None).intact
    assert verify(client, None, "user-a").intact
    for user_id in ("", "user-a", "user-b"):
        report = verify(client, checkpoint, user_id)
        assert not report.intact
        mismatch = report.first_mismatch
        assert mismatch.kind == pb.CHAIN_MISMATCH_KIND_CHECKPOINT
        assert (mismatch.user_id, mismatch.global_sequence) == ("", checkpoint.global_sequence)


def test_a_forged_checkpoint_does_not_verify(client, sign, history):
    checkpoint = sign()
    forged_root = ("0" if checkpoint.merkle_root[0] != "0" else "1") + checkpoint.merkle_root[1:]
    forged = replace(checkpoint, merkle_root=forged_root)

    mismatch = verify(client, forged).first_mismatch

    assert mismatch.kind == pb.CHAIN_MISMATCH_KIND_CHECKPOINT
    assert "signature" in mismatch.detail


def test_a_checkpoint_beyond_the_journal_is_reported(client, ledger, history, key_files):
    """As after entries were deleted from the journal's end: signed, but covering more."""
    signer = ledger.checkpointer._signer
    unsigned = Checkpoint(1, 1_000, 2, "0" * 64, 1, signer.key_id)
    beyond = replace(unsigned, signature=signer.sign(unsigned.signed_bytes()).hex())

    mismatch = verify(client, beyond).first_mismatch

    assert mismatch.kind == pb.CHAIN_MISMATCH_KIND_CHECKPOINT
    assert "covers global sequence 1000" in mismatch.detail


def test_a_malformed_checkpoint_is_invalid(client, sign, history):
    checkpoint = checkpoint_message(sign())
    checkpoint.merkle_root = "not hex"
    checkpoint.signature = checkpoint.signature.upper()
    request = pb.VerifyChainRequest(checkpoint=checkpoint)

    code, reason, fields = client.rejection(lambda: client.call("VerifyChain", request))

    assert (code, reason) == (INVALID, "CHECKPOINT_INVALID")
    assert fields == ("checkpoint.merkle_root", "checkpoint.signature")


# ----------------------------------------------------------------------------------------------
# Proving one user's head


def proof_from(response: pb.GetCheckpointProofResponse, checkpoint: Checkpoint) -> CheckpointProof:
    return CheckpointProof(
        checkpoint=checkpoint,
        leaf=ChainLeaf(response.leaf.user_id, response.leaf.user_sequence, response.leaf.hash),
        leaf_index=response.leaf_index,
        tree_size=response.tree_size,
        audit_path=tuple(response.audit_path),
    )


def get_proof(client, user_id: str, checkpoint_sequence: int = 0) -> pb.GetCheckpointProofResponse:
    request = pb.GetCheckpointProofRequest(user_id=user_id, checkpoint_sequence=checkpoint_sequence)
    return client.call("GetCheckpointProof", request)


def test_each_users_head_is_proven_against_the_checkpoint(client, sign, history):
    for user in range(5):
        client.set_capacity(f"user-{user}", 1_000)
    checkpoint = sign()
    heads = {e.user_id: e for e in entries_of(client) if e.global_sequence <= 10}

    for user_id in ("user-0", "user-3", "user-a", "user-b"):
        response = get_proof(client, user_id)
        assert checkpoint_from(response.checkpoint) == checkpoint
        assert (response.leaf.user_sequence, response.leaf.hash) == (
            heads[user_id].user_sequence,
            heads[user_id].hash,
        )
        assert proof_from(response, checkpoint).leads_to_the_root()
        assert response.tree_size == 7
    # A proof for one user's leaf does not prove another's.
    response = get_proof(client, "user-a")
    wrong_leaf = ChainLeaf("user-a", response.leaf.user_sequence + 1, response.leaf.hash)
    assert not CheckpointProof(
        checkpoint, wrong_leaf, response.leaf_index, response.tree_size, tuple(response.audit_path)
    ).leads_to_the_root()


def test_after_a_rewrite_the_users_proof_no_longer_leads_to_the_root(
    client, database, is_postgresql, sign, history
):
    checkpoint = sign()
    rewrite_history(database, is_postgresql, "user-a", 1)

    assert not proof_from(get_proof(client, "user-a"), checkpoint).leads_to_the_root()


def test_a_proof_names_what_it_cannot_find(client, sign, history):
    code, reason, _ = client.rejection(lambda: get_proof(client, "user-a"))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "CHECKPOINT_NOT_FOUND")
    sign()

    assert client.rejection(lambda: get_proof(client, "user-a", 2))[:2] == (
        grpc.StatusCode.NOT_FOUND,
        "CHECKPOINT_NOT_FOUND",
    )
    assert client.rejection(lambda: get_proof(client, "user-z"))[:2] == (
        grpc.StatusCode.NOT_FOUND,
        "USER_NOT_IN_CHECKPOINT",
    )


# ----------------------------------------------------------------------------------------------
# The operator's tool


def test_the_admin_tool_verifies_and_proves_against_the_logged_checkpoint(
    client, database, is_postgresql, server, sign, history, key_files, checkpoint_log, capsys
):
    sign()
    address = ["--address", f"127.0.0.1:{server.port}", "--plaintext"]
    with_log = ["--checkpoint-log", str(checkpoint_log), "--public-key", str(key_files[1])]

    assert admin.main([*address, "verify", *with_log]) == 0
    assert admin.main([*address, "prove", "user-a", *with_log]) == 0
    proved = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (proved["verified"], proved["user_id"]) == (True, "user-a")

    rewrite_history(database, is_postgresql, "user-a", 1)

    assert admin.main([*address, "verify"]) == 0
    assert admin.main([*address, "verify", *with_log]) == admin.EXIT_MISMATCH
    assert admin.main([*address, "prove", "user-a", *with_log]) == admin.EXIT_MISMATCH
