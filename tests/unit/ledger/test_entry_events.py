"""Every kind of journal entry maps to its own case of Entry's `event` oneof, with the currency
of its amounts, and an entry whose payload cannot be read is still listed (without an event)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sesame.ledger.v1 import ledger_service_pb2 as pb
from sesame.type.v1 import money_pb2

from services.ledger.api import mapping
from services.ledger.domain import events
from services.ledger.domain.journal import JournalEntry, chain_events
from services.ledger.domain.records import (
    ChainHead,
    Hold,
    HoldState,
    Obligation,
    ObligationOutcome,
    RepaymentStatus,
)
from services.ledger.service.typed_entries import typed_entries

NOW_US = 1_767_225_600_000_000

ONE_OF_EACH: list[events.Event] = [
    events.CapacitySet("CNY", 50_000, "score 712"),
    events.HoldPlaced("hold-1", "CNY", 20_000, "order-1", NOW_US, NOW_US + 3_600_000_000),
    events.HoldCaptured("hold-1", 12_000, 8_000, "obligation-1", NOW_US + 1),
    events.HoldReleased("hold-2", True, NOW_US + 2),
    events.HoldExpired("hold-3", NOW_US + 3),
    events.ObligationCreated(
        "obligation-1", "CNY", 12_000, NOW_US + 86_400_000_000, "fee", "order-1", "hold-1", NOW_US
    ),
    events.PaymentRecorded("obligation-1", 12_000, NOW_US + 4),
    events.ObligationClosed("obligation-1", ObligationOutcome.LATE, 3, NOW_US + 5),
    events.CreditLineReported("bank-1", "TWD", 900_000),
    events.StatementReported("bank-1", 2005, 5, "TWD", 30_000, 1_000, RepaymentStatus.LATE, 2),
    events.CheckpointSigned(1, 10, 2, "a" * 64, NOW_US + 7, "b" * 16, "c" * 128),
    events.ConsentGranted(NOW_US + 8),
    events.ConsentWithdrawn(NOW_US + 9),
    events.StatementAttached("obligation-1", "I was in hospital.", NOW_US + 10),
    events.ObligationReduced("obligation-1", 12_000, 10_000, "discount", NOW_US + 6),
]


class RecordsOnly:
    """The part of a read snapshot that typed entries read: holds and obligations by id."""

    def __init__(self, holds: list[Hold] = (), obligations: list[Obligation] = ()) -> None:
        self.holds = {hold.hold_id: hold for hold in holds}
        self.obligations = {obligation.obligation_id: obligation for obligation in obligations}
        self.reads = 0

    def get_hold(self, hold_id: str) -> Hold | None:
        self.reads += 1
        return self.holds.get(hold_id)

    def get_obligation(self, obligation_id: str) -> Obligation | None:
        self.reads += 1
        return self.obligations.get(obligation_id)


def journal(event_list: list[events.Event]) -> list[JournalEntry]:
    new_entries, _ = chain_events(
        ChainHead(),
        "user-a",
        event_list,
        request_id="request-1",
        request_hash="0" * 64,
        recorded_at_us=NOW_US,
    )
    return [JournalEntry.sequenced(entry, number) for number, entry in enumerate(new_entries, 1)]


def hold(currency_code: str) -> Hold:
    return Hold("hold-1", "user-a", currency_code, 20_000, HoldState.CAPTURED, "", 0, 1)


def obligation(currency_code: str) -> Obligation:
    return Obligation("obligation-1", "user-a", currency_code, 12_000, 1, "", "", 0)


def test_the_event_cases_are_exactly_the_entry_types():
    cases = {field.name for field in pb.Entry.DESCRIPTOR.oneofs_by_name["event"].fields}
    entry_types = {
        value.name.removeprefix("ENTRY_TYPE_").lower()
        for value in pb.EntryType.DESCRIPTOR.values
        if value.number != pb.ENTRY_TYPE_UNSPECIFIED
    }

    assert cases == entry_types == {entry_type.lower() for entry_type in events.EntryType}


def test_every_entry_type_maps_to_its_own_event_case():
    assert {event.entry_type for event in ONE_OF_EACH} == set(events.EntryType)
    entries = typed_entries(journal(ONE_OF_EACH), RecordsOnly())

    messages = [mapping.entry_message(typed) for typed in entries]

    for event, message in zip(ONE_OF_EACH, messages, strict=True):
        assert pb.EntryType.Name(message.type) == f"ENTRY_TYPE_{event.entry_type}"
        assert message.WhichOneof("event") == event.entry_type.lower()


def test_amounts_without_a_currency_take_the_one_of_the_hold_or_obligation_beside_them():
    records = RecordsOnly()
    entries = typed_entries(journal(ONE_OF_EACH), records)
    by_type = {typed.entry.entry_type: mapping.entry_message(typed) for typed in entries}

    captured = by_type[events.EntryType.HOLD_CAPTURED].hold_captured
    paid = by_type[events.EntryType.PAYMENT_RECORDED].payment_recorded
    reduced = by_type[events.EntryType.OBLIGATION_REDUCED].obligation_reduced
    assert captured.captured_amount == money_pb2.Money(currency_code="CNY", amount_minor=12_000)
    assert captured.released_amount.currency_code == "CNY"
    assert paid.amount.currency_code == "CNY"
    assert reduced.previous_amount_due == money_pb2.Money(currency_code="CNY", amount_minor=12_000)
    assert reduced.amount_due == money_pb2.Money(currency_code="CNY", amount_minor=10_000)
    assert records.reads == 0


@pytest.mark.parametrize("currency_code", ["USD", "TWD"])
def test_amounts_without_a_currency_take_the_one_of_the_stored_hold_or_obligation(currency_code):
    records = RecordsOnly([hold(currency_code)], [obligation(currency_code)])
    capture_payment_and_reduction = [
        ONE_OF_EACH[2],
        ONE_OF_EACH[6],
        ONE_OF_EACH[2],
        ONE_OF_EACH[-1],
    ]

    entries = typed_entries(journal(capture_payment_and_reduction), records)

    assert [typed.currency_code for typed in entries] == [currency_code] * 4
    assert records.reads == 2  # once per hold or obligation, whatever it is named by


def test_an_entry_whose_payload_cannot_be_read_is_listed_without_an_event():
    (entry,) = journal([ONE_OF_EACH[0]])
    broken = replace(entry, payload_json='{"capacity_minor":"50000"}')

    (typed,) = typed_entries([broken], RecordsOnly())
    message = mapping.entry_message(typed)

    assert typed.event is None
    assert message.WhichOneof("event") is None
    assert message.payload_json == broken.payload_json
