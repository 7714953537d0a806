"""What the ledger's use cases return: views of the projections, shaped for callers."""

from __future__ import annotations

from dataclasses import dataclass

from services.ledger.domain.records import (
    Account,
    ChainHead,
    ConsentState,
    CreditLine,
    Hold,
    Obligation,
    OutcomeCounts,
    Statement,
)


@dataclass(frozen=True, slots=True)
class AccountSummary:
    user_id: str
    # Empty while the user has no capacity or obligation in any currency.
    currency_code: str
    waiver_capacity_minor: int
    # Open holds not yet expired at the time of reading.
    held_minor: int
    available_minor: int
    outstanding_minor: int
    open_hold_count: int
    outcomes: OutcomeCounts
    last_user_sequence: int
    # The consent to be scored, now. Defaults, because answers stored before consent existed
    # are decoded into this type (see `batch_writer`).
    consent: ConsentState = ConsentState.NOT_GIVEN
    consent_since_us: int | None = None

    @classmethod
    def of(
        cls,
        account: Account,
        chain: ChainHead,
        *,
        held_unexpired_minor: int,
        open_unexpired_hold_count: int,
    ) -> AccountSummary:
        return cls(
            user_id=account.user_id,
            currency_code=account.currency_code,
            waiver_capacity_minor=account.waiver_capacity_minor,
            held_minor=held_unexpired_minor,
            available_minor=max(0, account.waiver_capacity_minor - held_unexpired_minor),
            outstanding_minor=account.outstanding_minor,
            open_hold_count=open_unexpired_hold_count,
            outcomes=account.outcomes,
            last_user_sequence=chain.user_sequence,
            consent=account.consent,
            consent_since_us=account.consent_since_us,
        )


@dataclass(frozen=True, slots=True)
class ConsentStatus:
    """A user's consent to be scored and since when (None while never given)."""

    state: ConsentState
    since_us: int | None

    @classmethod
    def of(cls, account: Account) -> ConsentStatus:
        return cls(account.consent, account.consent_since_us)


@dataclass(frozen=True, slots=True)
class CaptureResult:
    hold: Hold
    obligation: Obligation | None


@dataclass(frozen=True, slots=True)
class PartnerReportResult:
    user_id: str
    statements_recorded: int
    statements_unchanged: int
    credit_line_recorded: bool


@dataclass(frozen=True, slots=True)
class PartnerStatementsResult:
    results: tuple[PartnerReportResult, ...]


@dataclass(frozen=True, slots=True)
class SweepResult:
    expired_count: int
    more_remaining: bool


@dataclass(frozen=True, slots=True)
class CreditHistory:
    user_id: str
    credit_line: CreditLine | None
    # Newest period first.
    statements: tuple[Statement, ...]
    # Newest first, as they stood at `as_of_us`.
    obligations: tuple[Obligation, ...]
    as_of_us: int
    last_user_sequence: int
    last_global_sequence: int
    # The consent as it stands now, whatever `as_of_us` says.
    consent: ConsentStatus = ConsentStatus(ConsentState.NOT_GIVEN, None)
