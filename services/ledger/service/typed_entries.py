"""Journal entries as readers receive them: with their event decoded, and the currency of the
amounts the event states.

A capture's, a payment's and a reduction's payloads carry amounts but no currency: theirs is the
hold's or the obligation's, which never changes. It is taken from the hold's or obligation's own
entry when that is in the same page, else from its projection, read in the same snapshot as the
entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.ledger.domain.events import (
    CapacitySet,
    CreditLineReported,
    Event,
    HoldCaptured,
    HoldPlaced,
    ObligationCreated,
    ObligationReduced,
    PaymentRecorded,
    StatementReported,
)
from services.ledger.domain.journal import JournalEntry, entry_event
from services.ledger.service.ports import ReadTransaction


@dataclass(frozen=True, slots=True)
class TypedEntry:
    entry: JournalEntry
    # None when the payload cannot be decoded; VerifyChain reports such an entry.
    event: Event | None
    # The currency of the event's amounts; empty for an event without amounts (or an undecoded
    # one).
    currency_code: str


def typed_entries(entries: Sequence[JournalEntry], reader: ReadTransaction) -> list[TypedEntry]:
    """The entries with their events and currencies; `reader` must be the snapshot they came
    from, so that every hold or obligation they name is there."""
    events = [entry_event(entry) for entry in entries]
    hold_currencies: dict[str, str] = {}
    obligation_currencies: dict[str, str] = {}
    for event in events:
        if isinstance(event, HoldPlaced):
            hold_currencies[event.hold_id] = event.currency_code
        elif isinstance(event, ObligationCreated):
            obligation_currencies[event.obligation_id] = event.currency_code
    typed = []
    for entry, event in zip(entries, events, strict=True):
        match event:
            case (
                CapacitySet()
                | HoldPlaced()
                | ObligationCreated()
                | CreditLineReported()
                | StatementReported()
            ):
                currency_code = event.currency_code
            case HoldCaptured():
                currency_code = _hold_currency(event.hold_id, hold_currencies, reader)
            case PaymentRecorded() | ObligationReduced():
                currency_code = _obligation_currency(
                    event.obligation_id, obligation_currencies, reader
                )
            case _:
                currency_code = ""
        typed.append(TypedEntry(entry, event, currency_code))
    return typed


def _hold_currency(hold_id: str, known: dict[str, str], reader: ReadTransaction) -> str:
    if hold_id not in known:
        hold = reader.get_hold(hold_id)
        # A hold missing from its projection is for VerifyChain to report, not for a reader.
        known[hold_id] = "" if hold is None else hold.currency_code
    return known[hold_id]


def _obligation_currency(obligation_id: str, known: dict[str, str], reader: ReadTransaction) -> str:
    if obligation_id not in known:
        obligation = reader.get_obligation(obligation_id)
        known[obligation_id] = "" if obligation is None else obligation.currency_code
    return known[obligation_id]
