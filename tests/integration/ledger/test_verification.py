"""VerifyChain: intact journals verify; tampering with the journal or a projection is found."""

from __future__ import annotations

import grpc
import pytest
from sesame.ledger.v1 import ledger_service_pb2 as pb, ledger_service_pb2_grpc
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.common.server import create_server
from services.ledger import admin
from services.ledger.app import build_ledger
from services.ledger.settings import LedgerSettings


@pytest.fixture
def history(client):
    """Two users with a few entries each: user-a has entries 1, 3, 5; user-b 2, 4."""
    client.set_capacity("user-a", 50_000)
    client.set_capacity("user-b", 50_000)
    hold = client.place_hold("user-a", 30_000)
    client.place_hold("user-b", 20_000)
    client.capture(hold.hold_id, 10_000)
    return hold


def execute_as_admin(database, *statements):
    with database.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))


def tamper_with_journal(database, is_postgresql, statement):
    """What an operator with database access could do: get past the trigger, then edit."""
    if is_postgresql:
        execute_as_admin(
            database,
            "ALTER TABLE journal_entry DISABLE TRIGGER journal_entry_refuses_change",
            statement,
        )
    else:
        execute_as_admin(database, "DROP TRIGGER journal_entry_refuses_update", statement)


def test_an_untouched_journal_verifies(client, history):
    report = client.verify()

    assert report.intact
    assert (report.users_checked, report.entries_checked) == (2, 5)
    assert not report.HasField("first_mismatch")
    assert client.verify("user-b").entries_checked == 2


def test_the_journal_refuses_updates_and_deletes(database, history):
    for statement in (
        "UPDATE journal_entry SET payload_json = '{}' WHERE global_sequence = 1",
        "DELETE FROM journal_entry WHERE global_sequence = 1",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            execute_as_admin(database, statement)


def test_an_edited_payload_is_reported_at_its_entry(client, database, is_postgresql, history):
    tamper_with_journal(
        database,
        is_postgresql,
        "UPDATE journal_entry SET payload_json = replace(payload_json, '30000', '3000')"
        " WHERE global_sequence = 3",
    )

    report = client.verify()

    assert not report.intact
    mismatch = report.first_mismatch
    assert mismatch.kind == pb.CHAIN_MISMATCH_KIND_HASH
    assert (mismatch.user_id, mismatch.user_sequence, mismatch.global_sequence) == (
        "user-a",
        2,
        3,
    )
    assert client.verify("user-b").intact
    assert client.verify("user-a").first_mismatch.global_sequence == 3


def test_a_broken_link_is_reported_as_a_previous_hash_mismatch(
    client, database, is_postgresql, history
):
    tamper_with_journal(
        database,
        is_postgresql,
        f"UPDATE journal_entry SET previous_hash = '{'1' * 64}' WHERE global_sequence = 4",
    )

    mismatch = client.verify().first_mismatch

    assert mismatch.kind == pb.CHAIN_MISMATCH_KIND_PREVIOUS_HASH
    assert (mismatch.user_id, mismatch.global_sequence) == ("user-b", 4)


def test_an_edited_projection_is_reported_as_a_projection_mismatch(client, database, history):
    execute_as_admin(
        database, "UPDATE account SET held_minor = held_minor + 1 WHERE user_id = 'user-b'"
    )

    report = client.verify()

    assert not report.intact
    mismatch = report.first_mismatch
    assert mismatch.kind == pb.CHAIN_MISMATCH_KIND_PROJECTION
    assert mismatch.user_id == "user-b"
    assert (mismatch.user_sequence, mismatch.global_sequence) == (0, 0)
    assert "held_minor" in mismatch.detail
    assert client.verify("user-a").intact


def test_an_edited_hold_is_reported_as_a_projection_mismatch(client, database, history):
    execute_as_admin(
        database, f"UPDATE hold SET amount_minor = 20000 WHERE hold_id = '{history.hold_id}'"
    )

    mismatch = client.verify("user-a").first_mismatch

    assert mismatch.kind == pb.CHAIN_MISMATCH_KIND_PROJECTION
    assert history.hold_id in mismatch.detail
    assert "amount_minor" in mismatch.detail


def test_the_admin_tool_exits_non_zero_on_a_mismatch(client, database, server, history, capsys):
    execute_as_admin(database, "UPDATE account SET held_minor = held_minor + 1")

    exit_code = admin.main(["--address", f"127.0.0.1:{server.port}", "--plaintext", "verify"])

    assert exit_code == admin.EXIT_MISMATCH
    assert '"intact": false' in capsys.readouterr().out


@pytest.fixture
def reduced_obligation(client):
    """user-c: an obligation of 8,000 (user sequence 1), 2,000 paid (2), reduced to 6,000 (3)."""
    obligation = client.create_obligation("user-c", 8_000)
    client.pay(obligation.obligation_id, 2_000)
    client.reduce(obligation.obligation_id, 6_000)
    assert client.verify().intact
    return obligation


def test_an_edited_reduction_is_reported_at_its_entry(
    client, database, is_postgresql, reduced_obligation
):
    tamper_with_journal(
        database,
        is_postgresql,
        # A reduction to what was paid, which would let the obligation close on time. (The
        # backslashes keep SQLAlchemy from reading ":6000" as a parameter.)
        "UPDATE journal_entry SET payload_json ="
        r""" replace(payload_json, '"amount_due_minor"\:6000', '"amount_due_minor"\:2000')"""
        " WHERE entry_type = 'OBLIGATION_REDUCED'",
    )

    mismatch = client.verify().first_mismatch

    assert mismatch.kind == pb.CHAIN_MISMATCH_KIND_HASH
    assert (mismatch.user_id, mismatch.user_sequence) == ("user-c", 3)


def test_an_obligation_whose_amount_due_differs_from_its_reductions_is_a_projection_mismatch(
    client, database, reduced_obligation
):
    execute_as_admin(
        database,
        "UPDATE obligation SET amount_due_minor = 8000"
        f" WHERE obligation_id = '{reduced_obligation.obligation_id}'",
    )

    mismatch = client.verify("user-c").first_mismatch

    assert mismatch.kind == pb.CHAIN_MISMATCH_KIND_PROJECTION
    assert reduced_obligation.obligation_id in mismatch.detail
    assert "amount_due_minor" in mismatch.detail


def test_an_outstanding_amount_that_ignores_a_reduction_is_a_projection_mismatch(
    client, database, reduced_obligation
):
    execute_as_admin(
        database, "UPDATE account SET outstanding_minor = 6000 WHERE user_id = 'user-c'"
    )

    mismatch = client.verify("user-c").first_mismatch

    assert mismatch.kind == pb.CHAIN_MISMATCH_KIND_PROJECTION
    assert "outstanding_minor" in mismatch.detail


# ----------------------------------------------------------------------------------------------
# Request records under the chain: every entry a request wrote has the request's record, with
# the same request hash, naming as many entries as carry its id.


def delete_request_record(database, request_id):
    execute_as_admin(database, f"DELETE FROM request_record WHERE request_id = '{request_id}'")


def hold_entry(client, user_id, user_sequence):
    request = pb.ListEntriesRequest(user_id=user_id)
    return [e for e in client.call("ListEntries", request).entries][user_sequence - 1]


def test_a_deleted_request_record_is_reported_at_its_entry(client, database, history):
    placed = hold_entry(client, "user-a", 2)
    delete_request_record(database, placed.request_id)

    for report in (client.verify(), client.verify("user-a")):
        assert not report.intact
        mismatch = report.first_mismatch
        assert mismatch.kind == pb.CHAIN_MISMATCH_KIND_REQUEST_RECORD
        assert (mismatch.user_id, mismatch.user_sequence, mismatch.global_sequence) == (
            "user-a",
            2,
            placed.global_sequence,
        )
        assert placed.request_id in mismatch.detail
    assert client.verify("user-b").intact


def test_a_hold_placed_twice_after_its_record_was_deleted_is_reported(client, database):
    """The probe: the idempotency record deleted behind the ledger's back, a replayed PlaceHold
    places a second hold. Nothing in the write path can tell (it reads only the record); the
    verifier can, because both entries carry the one request id."""
    client.set_capacity("user-a", 50_000)
    request = client.place_hold_request("user-a", 10_000)
    first = client.call("PlaceHold", request).hold
    delete_request_record(database, request.request_id)

    second = client.call("PlaceHold", request).hold

    assert second.hold_id != first.hold_id
    for report in (client.verify(), client.verify("user-a")):
        mismatch = report.first_mismatch
        assert mismatch.kind == pb.CHAIN_MISMATCH_KIND_REQUEST_RECORD
        assert (mismatch.user_id, mismatch.user_sequence) == ("user-a", 2)
        assert "2 entries" in mismatch.detail


def test_a_request_record_whose_hash_differs_from_its_entries_is_reported(
    client, database, history
):
    captured = hold_entry(client, "user-a", 3)
    execute_as_admin(
        database,
        f"UPDATE request_record SET request_hash = '{'e' * 64}'"
        f" WHERE request_id = '{captured.request_id}'",
    )

    mismatch = client.verify("user-a").first_mismatch

    assert mismatch.kind == pb.CHAIN_MISMATCH_KIND_REQUEST_RECORD
    assert mismatch.global_sequence == captured.global_sequence


def test_a_request_record_naming_entries_that_do_not_exist_is_reported(client, database, history):
    execute_as_admin(
        database,
        "INSERT INTO request_record VALUES ('ghost', '" + "a" * 64 + "', 'PlaceHold',"
        " 'SUCCEEDED', '{}', '', '', 0, 1)",
    )

    mismatch = client.verify().first_mismatch

    assert mismatch.kind == pb.CHAIN_MISMATCH_KIND_REQUEST_RECORD
    assert (mismatch.user_id, mismatch.global_sequence) == ("", 0)
    assert "ghost" in mismatch.detail


def test_refusals_expiries_and_unchanged_statements_verify(client, clock):
    """What writes a record without entries (a refusal, a batch that changed nothing) and what
    writes entries without a record (an expiry) is no mismatch."""
    client.set_capacity("user-a", 1_000)
    client.rejection(lambda: client.place_hold("user-a", 5_000))
    client.place_hold("user-a", 500, expires_in_s=60)
    clock.advance(seconds=61)
    assert client.sweep().expired_count == 1
    statements = pb.RecordPartnerStatementsRequest(
        reports=[pb.PartnerReport(user_id="user-b", partner_id="bank", credit_line=client.money(9))]
    )
    for _ in range(2):
        statements.request_id = client.new_request_id()
        client.call("RecordPartnerStatements", statements)

    report = client.verify()

    assert report.intact, report.first_mismatch
    assert report.entries_checked == 4


def test_a_checkpoint_given_to_a_ledger_without_a_checkpoint_key_is_refused(
    ledger_database_url, client, history
):
    settings = LedgerSettings(database_url=ledger_database_url, port=0, grace_period_s=0.5)
    keyless = build_ledger(settings)
    created = create_server(settings, [keyless.registration])
    created.server.start()
    checkpoint = pb.Checkpoint(
        checkpoint_sequence=1,
        global_sequence=5,
        user_count=2,
        merkle_root="0" * 64,
        key_id="0" * 16,
        signature="0" * 128,
    )
    checkpoint.sign_time.seconds = 1
    try:
        with grpc.insecure_channel(f"127.0.0.1:{created.port}") as channel:
            stub = ledger_service_pb2_grpc.LedgerServiceStub(channel)
            code, reason, _ = client.rejection(
                lambda: stub.VerifyChain(pb.VerifyChainRequest(checkpoint=checkpoint), timeout=10)
            )
    finally:
        created.server.stop(0).wait()
        keyless.close()

    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CHECKPOINTS_NOT_CONFIGURED")


def test_one_users_share_of_a_batch_hides_no_later_disagreement(client, database):
    """A partner batch's record names the entries of every user in it, so one user's share is
    fewer, and fine; a deleted record of that user's later request is still found."""
    batch = pb.RecordPartnerStatementsRequest(
        request_id=client.new_request_id(),
        reports=[
            pb.PartnerReport(user_id=user, partner_id="bank", credit_line=client.money(9, "TWD"))
            for user in ("user-x", "user-y")
        ],
    )
    client.call("RecordPartnerStatements", batch)
    assert client.verify("user-x").intact and client.verify().intact
    client.set_capacity("user-x", 1_000)
    delete_request_record(database, hold_entry(client, "user-x", 2).request_id)

    mismatch = client.verify("user-x").first_mismatch

    assert (mismatch.kind, mismatch.user_sequence) == (pb.CHAIN_MISMATCH_KIND_REQUEST_RECORD, 2)
