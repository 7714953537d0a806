"""Negative records stop counting five years after they happened.

Credit-reporting rules let a person be forgotten after a time: a late statement, an obligation
paid late or defaulted, or one left unpaid, counts in a score for five years after the month or
the due time it concerns, and then no more. The journal keeps the record; the score reads the
history through `without_expired_negative_records`, which leaves such records out as of the
moment scored (the history's `as_of`, which the ledger sets to its clock's now for a score "as
of now"; a test sets it). Records that speak for a person (paid in full, on time) are kept.

The feature window (six months before `as_of`) already reaches no record that old; the rule is
here on its own so that it holds whatever window the features read.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from services.score.domain.history import (
    CreditHistory,
    ObligationOutcome,
    ObligationRecord,
    RepaymentStatus,
    StatementRecord,
)

NEGATIVE_RECORD_YEARS = 5


def forgotten_before(as_of: datetime) -> datetime:
    """The moment five years before `as_of`: negative records before it no longer count. In
    the first five years of the calendar nothing is that old."""
    if as_of.year <= NEGATIVE_RECORD_YEARS:
        return datetime.min.replace(tzinfo=as_of.tzinfo)
    try:
        return as_of.replace(year=as_of.year - NEGATIVE_RECORD_YEARS)
    except ValueError:  # 29 February, in a year five years earlier that has none
        return as_of.replace(year=as_of.year - NEGATIVE_RECORD_YEARS, day=28)


def without_expired_negative_records(history: CreditHistory) -> CreditHistory:
    """The history as a score may read it: negative records older than five years left out.
    A history with no `as_of` is returned as it is (no moment to count the years from)."""
    if history.as_of is None:
        return history
    cutoff = forgotten_before(history.as_of)
    statements = tuple(s for s in history.statements if not _expired_statement(s, cutoff))
    obligations = tuple(o for o in history.obligations if not _expired_obligation(o, cutoff))
    if len(statements) == len(history.statements) and len(obligations) == len(history.obligations):
        return history
    return dataclasses.replace(history, statements=statements, obligations=obligations)


def _expired_statement(statement: StatementRecord, cutoff: datetime) -> bool:
    if statement.repayment_status is not RepaymentStatus.LATE:
        return False
    # A statement concerns its whole month: it expires once the month's end is five years past.
    return _first_of_next_month(statement.year, statement.month) <= cutoff


def _first_of_next_month(year: int, month: int) -> datetime:
    return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)


def _expired_obligation(obligation: ObligationRecord, cutoff: datetime) -> bool:
    # On time is no negative record; an open one not yet five years past due is not expired.
    if obligation.outcome is ObligationOutcome.ON_TIME or obligation.due_at is None:
        return False
    return obligation.due_at < cutoff
