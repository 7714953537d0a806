"""Events: the payload of each kind of journal entry.

An event says what happened, with every value `apply` needs, so the projection can be rebuilt
from the journal alone. The user is not repeated in the payload: it is the entry's own field.
Payload field names are part of the journal's format; renaming one is a schema change.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from services.ledger.domain.codec import Plain, from_plain, to_plain
from services.ledger.domain.records import ObligationOutcome, RepaymentStatus, StatementPeriod


class EntryType(StrEnum):
    CAPACITY_SET = "CAPACITY_SET"
    HOLD_PLACED = "HOLD_PLACED"
    HOLD_CAPTURED = "HOLD_CAPTURED"
    HOLD_RELEASED = "HOLD_RELEASED"
    HOLD_EXPIRED = "HOLD_EXPIRED"
    OBLIGATION_CREATED = "OBLIGATION_CREATED"
    PAYMENT_RECORDED = "PAYMENT_RECORDED"
    OBLIGATION_CLOSED = "OBLIGATION_CLOSED"
    CREDIT_LINE_REPORTED = "CREDIT_LINE_REPORTED"
    STATEMENT_REPORTED = "STATEMENT_REPORTED"
    OBLIGATION_REDUCED = "OBLIGATION_REDUCED"
    CHECKPOINT_SIGNED = "CHECKPOINT_SIGNED"
    CONSENT_GRANTED = "CONSENT_GRANTED"
    CONSENT_WITHDRAWN = "CONSENT_WITHDRAWN"
    STATEMENT_ATTACHED = "STATEMENT_ATTACHED"


# What GetCreditHistory does not answer: holds (a capture's obligation has an entry of its own
# kind), the waiver capacity, and the ledger's signed checkpoints.
_OUTSIDE_THE_CREDIT_HISTORY = frozenset(
    {
        EntryType.CAPACITY_SET,
        EntryType.HOLD_PLACED,
        EntryType.HOLD_RELEASED,
        EntryType.HOLD_EXPIRED,
        EntryType.CHECKPOINT_SIGNED,
    }
)


def changes_credit_history(entry_type: str) -> bool:
    """Whether an entry of this type changes what GetCreditHistory answers for its user: any
    type not named above, one added later included, so that a consent granted or withdrawn, an
    obligation's outcome or a partner's statement always reaches those who follow histories."""
    return entry_type not in _OUTSIDE_THE_CREDIT_HISTORY


@dataclass(frozen=True, slots=True)
class CapacitySet:
    entry_type: ClassVar[EntryType] = EntryType.CAPACITY_SET
    currency_code: str
    capacity_minor: int
    reason: str


@dataclass(frozen=True, slots=True)
class HoldPlaced:
    entry_type: ClassVar[EntryType] = EntryType.HOLD_PLACED
    hold_id: str
    currency_code: str
    amount_minor: int
    reference: str
    placed_at_us: int
    expires_at_us: int


@dataclass(frozen=True, slots=True)
class HoldCaptured:
    entry_type: ClassVar[EntryType] = EntryType.HOLD_CAPTURED
    hold_id: str
    captured_minor: int
    released_minor: int
    obligation_id: str
    captured_at_us: int


@dataclass(frozen=True, slots=True)
class HoldReleased:
    entry_type: ClassVar[EntryType] = EntryType.HOLD_RELEASED
    hold_id: str
    fulfilled: bool
    released_at_us: int


@dataclass(frozen=True, slots=True)
class HoldExpired:
    entry_type: ClassVar[EntryType] = EntryType.HOLD_EXPIRED
    hold_id: str
    # The hold's own expiry time, not when the sweeper noticed: a hold read before and after
    # the sweep shows the same resolution time.
    expired_at_us: int


@dataclass(frozen=True, slots=True)
class ObligationCreated:
    entry_type: ClassVar[EntryType] = EntryType.OBLIGATION_CREATED
    obligation_id: str
    currency_code: str
    amount_due_minor: int
    due_at_us: int
    purpose: str
    reference: str
    hold_id: str
    created_at_us: int


@dataclass(frozen=True, slots=True)
class PaymentRecorded:
    entry_type: ClassVar[EntryType] = EntryType.PAYMENT_RECORDED
    obligation_id: str
    amount_minor: int
    paid_at_us: int


@dataclass(frozen=True, slots=True)
class ObligationClosed:
    entry_type: ClassVar[EntryType] = EntryType.OBLIGATION_CLOSED
    obligation_id: str
    outcome: ObligationOutcome
    days_late: int
    closed_at_us: int


@dataclass(frozen=True, slots=True)
class ObligationReduced:
    """The amount due was lowered. Both amounts are in the obligation's currency; the previous
    one makes the entry say how much was taken off without the journal before it, and lets
    verification check that the entry follows the facts it was decided on."""

    entry_type: ClassVar[EntryType] = EntryType.OBLIGATION_REDUCED
    obligation_id: str
    previous_amount_due_minor: int
    amount_due_minor: int
    reason: str
    reduced_at_us: int


@dataclass(frozen=True, slots=True)
class CreditLineReported:
    entry_type: ClassVar[EntryType] = EntryType.CREDIT_LINE_REPORTED
    partner_id: str
    currency_code: str
    amount_minor: int


@dataclass(frozen=True, slots=True)
class StatementReported:
    entry_type: ClassVar[EntryType] = EntryType.STATEMENT_REPORTED
    partner_id: str
    year: int
    month: int
    currency_code: str
    balance_minor: int
    amount_paid_minor: int
    repayment_status: RepaymentStatus
    months_late: int

    @property
    def period(self) -> StatementPeriod:
        return StatementPeriod(self.year, self.month)


@dataclass(frozen=True, slots=True)
class CheckpointSigned:
    """The ledger signed a checkpoint (see `checkpoints`); journaled on the ledger's own chain,
    whose user sequence is the checkpoint's sequence number."""

    entry_type: ClassVar[EntryType] = EntryType.CHECKPOINT_SIGNED
    checkpoint_sequence: int
    global_sequence: int
    user_count: int
    merkle_root: str
    signed_at_us: int
    key_id: str
    signature: str


@dataclass(frozen=True, slots=True)
class ConsentGranted:
    """The user granted consent to be scored."""

    entry_type: ClassVar[EntryType] = EntryType.CONSENT_GRANTED
    granted_at_us: int


@dataclass(frozen=True, slots=True)
class ConsentWithdrawn:
    """The user withdrew the consent granted before."""

    entry_type: ClassVar[EntryType] = EntryType.CONSENT_WITHDRAWN
    withdrawn_at_us: int


@dataclass(frozen=True, slots=True)
class StatementAttached:
    """The user attached a statement to a negative record (an obligation closed late or
    defaulted); it replaces the one attached before, which the journal keeps."""

    entry_type: ClassVar[EntryType] = EntryType.STATEMENT_ATTACHED
    obligation_id: str
    text: str
    attached_at_us: int


Event = (
    CapacitySet
    | HoldPlaced
    | HoldCaptured
    | HoldReleased
    | HoldExpired
    | ObligationCreated
    | PaymentRecorded
    | ObligationClosed
    | ObligationReduced
    | CreditLineReported
    | StatementReported
    | CheckpointSigned
    | ConsentGranted
    | ConsentWithdrawn
    | StatementAttached
)

EVENT_CLASS_BY_TYPE: dict[EntryType, type[Event]] = {
    event_class.entry_type: event_class
    for event_class in (
        CapacitySet,
        HoldPlaced,
        HoldCaptured,
        HoldReleased,
        HoldExpired,
        ObligationCreated,
        PaymentRecorded,
        ObligationClosed,
        ObligationReduced,
        CreditLineReported,
        StatementReported,
        CheckpointSigned,
        ConsentGranted,
        ConsentWithdrawn,
        StatementAttached,
    )
}
assert set(EVENT_CLASS_BY_TYPE) == set(EntryType), "every entry type has exactly one event class"


def event_payload(event: Event) -> Plain:
    return to_plain(event)


def decode_event(entry_type: str, payload: Plain) -> Event:
    """The event an entry records; raises ValueError for an unknown type or a malformed payload."""
    event_class = EVENT_CLASS_BY_TYPE[EntryType(entry_type)]
    return from_plain(event_class, payload)
