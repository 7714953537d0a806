"""Journal entries carry their fact twice: as payload_json, the canonical form the hash covers,
and as a typed event. Entries written by every mutation are read back through ListEntries and
WatchEntries, and the typed event must say exactly what payload_json says."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from google.protobuf import timestamp_pb2
from sesame.ledger.v1 import ledger_service_pb2 as pb
from sesame.type.v1 import money_pb2

MICROSECONDS_PER_SECOND = 1_000_000


def microseconds(timestamp: timestamp_pb2.Timestamp) -> int:
    return timestamp.seconds * MICROSECONDS_PER_SECOND + timestamp.nanos // 1000


def enum_name(enum: Any, number: int, prefix: str) -> str:
    return str(enum.Name(number)).removeprefix(prefix)


def payload_from_event(entry: pb.Entry) -> dict[str, Any]:
    """What the typed event says, written in payload_json's units and names. A capture's, a
    payment's and a reduction's currency is not in their payload; it is checked against the
    hold's or obligation's separately."""
    case = entry.WhichOneof("event")
    event = getattr(entry, case)
    match case:
        case "capacity_set":
            return {
                "currency_code": event.capacity.currency_code,
                "capacity_minor": event.capacity.amount_minor,
                "reason": event.reason,
            }
        case "hold_placed":
            return {
                "hold_id": event.hold_id,
                "currency_code": event.amount.currency_code,
                "amount_minor": event.amount.amount_minor,
                "reference": event.reference,
                "placed_at_us": microseconds(event.place_time),
                "expires_at_us": microseconds(event.expire_time),
            }
        case "hold_captured":
            return {
                "hold_id": event.hold_id,
                "captured_minor": event.captured_amount.amount_minor,
                "released_minor": event.released_amount.amount_minor,
                "obligation_id": event.obligation_id,
                "captured_at_us": microseconds(event.capture_time),
            }
        case "hold_released":
            return {
                "hold_id": event.hold_id,
                "fulfilled": event.fulfilled,
                "released_at_us": microseconds(event.release_time),
            }
        case "hold_expired":
            return {"hold_id": event.hold_id, "expired_at_us": microseconds(event.expire_time)}
        case "obligation_created":
            return {
                "obligation_id": event.obligation_id,
                "currency_code": event.amount_due.currency_code,
                "amount_due_minor": event.amount_due.amount_minor,
                "due_at_us": microseconds(event.due_time),
                "purpose": event.purpose,
                "reference": event.reference,
                "hold_id": event.hold_id,
                "created_at_us": microseconds(event.create_time),
            }
        case "payment_recorded":
            return {
                "obligation_id": event.obligation_id,
                "amount_minor": event.amount.amount_minor,
                "paid_at_us": microseconds(event.paid_time),
            }
        case "obligation_closed":
            return {
                "obligation_id": event.obligation_id,
                "outcome": enum_name(pb.ObligationOutcome, event.outcome, "OBLIGATION_OUTCOME_"),
                "days_late": event.days_late,
                "closed_at_us": microseconds(event.close_time),
            }
        case "obligation_reduced":
            return {
                "obligation_id": event.obligation_id,
                "previous_amount_due_minor": event.previous_amount_due.amount_minor,
                "amount_due_minor": event.amount_due.amount_minor,
                "reason": event.reason,
                "reduced_at_us": microseconds(event.reduce_time),
            }
        case "credit_line_reported":
            return {
                "partner_id": event.partner_id,
                "currency_code": event.credit_line.currency_code,
                "amount_minor": event.credit_line.amount_minor,
            }
        case "statement_reported":
            statement = event.statement
            assert statement.amount_paid.currency_code == statement.balance.currency_code
            return {
                "partner_id": event.partner_id,
                "year": statement.period.year,
                "month": statement.period.month,
                "currency_code": statement.balance.currency_code,
                "balance_minor": statement.balance.amount_minor,
                "amount_paid_minor": statement.amount_paid.amount_minor,
                "repayment_status": enum_name(
                    pb.RepaymentStatus, statement.repayment_status, "REPAYMENT_STATUS_"
                ),
                "months_late": statement.months_late,
            }
        case "consent_granted":
            return {"granted_at_us": microseconds(event.grant_time)}
        case "consent_withdrawn":
            return {"withdrawn_at_us": microseconds(event.withdraw_time)}
        case "statement_attached":
            return {
                "obligation_id": event.obligation_id,
                "text": event.statement.text,
                "attached_at_us": microseconds(event.statement.attach_time),
            }
        case "checkpoint_signed":
            checkpoint = event.checkpoint
            return {
                "checkpoint_sequence": checkpoint.checkpoint_sequence,
                "global_sequence": checkpoint.global_sequence,
                "user_count": checkpoint.user_count,
                "merkle_root": checkpoint.merkle_root,
                "signed_at_us": microseconds(checkpoint.sign_time),
                "key_id": checkpoint.key_id,
                "signature": checkpoint.signature,
            }
    raise AssertionError(f"no typed event in entry {entry.global_sequence}")


def money(amount_minor: int, currency_code: str) -> money_pb2.Money:
    return money_pb2.Money(currency_code=currency_code, amount_minor=amount_minor)


def write_one_of_each(client: Any) -> dict[str, str]:
    """Entries of every type, from every mutation; the currency of each hold and obligation."""
    client.set_capacity("user-a", 50_000)
    captured = client.place_hold("user-a", 20_000, reference="order-1")
    released = client.place_hold("user-a", 5_000, reference="order-2")
    expiring = client.place_hold("user-a", 1_000, expires_in_s=60)
    capture = client.capture(captured.hold_id, 12_000, due_in_s=86_400, purpose="rental fee")
    client.release(released.hold_id, fulfilled=True)
    client.clock.advance(seconds=120)
    assert client.sweep().expired_count == 1
    created = client.create_obligation("user-a", 3_000, purpose="late fee")
    paid = pb.RecordPaymentRequest(
        request_id=client.new_request_id(),
        obligation_id=created.obligation_id,
        amount=money(3_000, "CNY"),
        paid_time=client.timestamp_in(-30),
    )
    client.call("RecordPayment", paid)
    client.close_obligation(created.obligation_id, pb.OBLIGATION_OUTCOME_LATE, days_late=3)
    client.call(
        "AttachStatement",
        pb.AttachStatementRequest(
            request_id=client.new_request_id(),
            user_id="user-a",
            obligation_id=created.obligation_id,
            text="Paid three days late: the bank was closed.",
        ),
    )
    for state in (pb.CONSENT_STATE_GRANTED, pb.CONSENT_STATE_WITHDRAWN):
        client.call(
            "RecordConsent",
            pb.RecordConsentRequest(
                request_id=client.new_request_id(), user_id="user-a", state=state
            ),
        )
    client.reduce(capture.obligation.obligation_id, 10_000, reason="returned early")
    client.pay(capture.obligation.obligation_id, 10_000)
    client.close_obligation(capture.obligation.obligation_id, pb.OBLIGATION_OUTCOME_ON_TIME)
    statements = pb.RecordPartnerStatementsRequest(
        request_id=client.new_request_id(),
        reports=[
            pb.PartnerReport(
                user_id="user-b",
                partner_id="bank-1",
                credit_line=money(900_000, "TWD"),
                statements=[
                    pb.Statement(
                        period=pb.StatementPeriod(year=2005, month=month),
                        balance=money(balance, "TWD"),
                        amount_paid=money(1_000, "TWD"),
                        repayment_status=status,
                        months_late=months_late,
                    )
                    for month, balance, status, months_late in [
                        (4, -2_000, pb.REPAYMENT_STATUS_PAID_IN_FULL, 0),
                        (5, 30_000, pb.REPAYMENT_STATUS_LATE, 2),
                        (6, 0, pb.REPAYMENT_STATUS_NO_USE, 0),
                    ]
                ],
            )
        ],
    )
    client.call("RecordPartnerStatements", statements)
    assert client.sign_checkpoint() is not None
    currencies = {hold.hold_id: "CNY" for hold in (captured, released, expiring)}
    currencies[created.obligation_id] = currencies[capture.obligation.obligation_id] = "CNY"
    return currencies


def list_all(client: Any, page_size: int) -> list[pb.Entry]:
    entries: list[pb.Entry] = []
    token = ""
    for _ in range(1000):
        page = client.call(
            "ListEntries", pb.ListEntriesRequest(page_size=page_size, page_token=token)
        )
        entries.extend(page.entries)
        token = page.next_page_token
        if not token:
            return entries
    raise AssertionError("ListEntries never ended")


def test_every_entry_types_event_agrees_with_its_payload_json(client):
    currencies = write_one_of_each(client)

    entries = list_all(client, page_size=1000)

    assert {entry.WhichOneof("event") for entry in entries} == {
        name.removeprefix("ENTRY_TYPE_").lower()
        for name in (value.name for value in pb.EntryType.DESCRIPTOR.values)
        if name != "ENTRY_TYPE_UNSPECIFIED"
    }
    for entry in entries:
        assert (
            entry.WhichOneof("event") == enum_name(pb.EntryType, entry.type, "ENTRY_TYPE_").lower()
        ), entry
        assert payload_from_event(entry) == json.loads(entry.payload_json), entry
    for entry in entries:
        if entry.HasField("hold_captured"):
            captured = entry.hold_captured
            currency = currencies[captured.hold_id]
            assert captured.captured_amount.currency_code == currency
            assert captured.released_amount.currency_code == currency
        if entry.HasField("payment_recorded"):
            payment = entry.payment_recorded
            assert payment.amount.currency_code == currencies[payment.obligation_id]
        if entry.HasField("obligation_reduced"):
            reduction = entry.obligation_reduced
            currency = currencies[reduction.obligation_id]
            assert reduction.previous_amount_due.currency_code == currency
            assert reduction.amount_due.currency_code == currency


def test_a_page_without_the_holds_own_entry_gives_the_same_events(client):
    # With one entry a page, a capture's, payment's or reduction's currency comes from the
    # hold's or obligation's record rather than from an entry beside it.
    write_one_of_each(client)

    assert list_all(client, page_size=1) == list_all(client, page_size=1000)


def test_the_stream_gives_the_same_typed_entries_as_the_listing(client, stub):
    write_one_of_each(client)
    listed = list_all(client, page_size=1000)

    call = stub.WatchEntries(pb.WatchEntriesRequest(), timeout=30)
    streamed = []
    for response in call:
        streamed.append(response.entry)
        if len(streamed) == len(listed):
            call.cancel()
            break

    assert streamed == listed


def test_an_outside_verifier_recomputes_every_hash_from_what_the_contract_documents(client):
    write_one_of_each(client)
    previous_by_user: dict[str, str] = {}

    for entry in list_all(client, page_size=1000):
        previous = previous_by_user.get(entry.user_id, "0" * 64)
        others = json.dumps(
            {
                "recorded_at_us": microseconds(entry.record_time),
                "request_hash": entry.request_hash,
                "request_id": entry.request_id,
                "schema_version": 1,
                "type": enum_name(pb.EntryType, entry.type, "ENTRY_TYPE_"),
                "user_id": entry.user_id,
                "user_sequence": entry.user_sequence,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
        )
        canonical = '{"payload":' + entry.payload_json + "," + others[1:]
        expected = hashlib.sha256(bytes.fromhex(previous) + canonical.encode("ascii"))

        assert entry.previous_hash == previous
        assert entry.hash == expected.hexdigest()
        previous_by_user[entry.user_id] = entry.hash
