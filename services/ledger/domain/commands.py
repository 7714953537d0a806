"""Commands: what a caller asks the ledger to do, exactly as asked.

Fields mirror the request messages (unset fields are None) so validation can name the offending
field as the caller wrote it, and so the request hash covers what was sent, not defaults filled
in later (a retry with `paid_at` unset must match the original, whatever time it is now).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.money import Money
from services.ledger.domain.records import (
    ConsentState,
    ObligationOutcome,
    RepaymentStatus,
    StatementPeriod,
)


@dataclass(frozen=True, slots=True)
class SetWaiverCapacity:
    request_id: str
    user_id: str
    capacity: Money | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PlaceHold:
    request_id: str
    user_id: str
    amount: Money | None
    # None when the request left `expires_in` unset.
    expires_in_us: int | None
    reference: str = ""


@dataclass(frozen=True, slots=True)
class ObligationTerms:
    due_at_us: int | None
    purpose: str = ""


@dataclass(frozen=True, slots=True)
class CaptureHold:
    request_id: str
    hold_id: str
    amount: Money | None
    obligation: ObligationTerms | None = None


@dataclass(frozen=True, slots=True)
class ReleaseHold:
    request_id: str
    hold_id: str
    fulfilled: bool = False


@dataclass(frozen=True, slots=True)
class CreateObligation:
    request_id: str
    user_id: str
    amount_due: Money | None
    due_at_us: int | None
    purpose: str = ""
    reference: str = ""


@dataclass(frozen=True, slots=True)
class RecordPayment:
    request_id: str
    obligation_id: str
    amount: Money | None
    paid_at_us: int | None = None


@dataclass(frozen=True, slots=True)
class CloseObligation:
    request_id: str
    obligation_id: str
    outcome: ObligationOutcome | None
    days_late: int = 0
    closed_at_us: int | None = None


@dataclass(frozen=True, slots=True)
class ReduceObligation:
    request_id: str
    obligation_id: str
    # The new amount due, not the reduction.
    amount_due: Money | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StatementReport:
    period: StatementPeriod | None
    balance: Money | None
    amount_paid: Money | None
    repayment_status: RepaymentStatus | None
    months_late: int = 0


@dataclass(frozen=True, slots=True)
class PartnerReport:
    user_id: str
    partner_id: str
    credit_line: Money | None
    statements: tuple[StatementReport, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordPartnerStatements:
    request_id: str
    reports: tuple[PartnerReport, ...]


@dataclass(frozen=True, slots=True)
class RecordConsent:
    request_id: str
    user_id: str
    # GRANTED or WITHDRAWN; None when the request left it unspecified.
    state: ConsentState | None


@dataclass(frozen=True, slots=True)
class AttachStatement:
    request_id: str
    user_id: str
    obligation_id: str
    # As the request gave it; the ledger keeps it without leading and trailing white space.
    text: str


MutationCommand = (
    SetWaiverCapacity
    | PlaceHold
    | CaptureHold
    | ReleaseHold
    | CreateObligation
    | RecordPayment
    | CloseObligation
    | ReduceObligation
    | RecordPartnerStatements
    | RecordConsent
    | AttachStatement
)
