"""Hypothesis strategies for credit histories as the ledger can hold them: partner statements
in the months around 2005 and Sesame obligations with every outcome."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import strategies as st

from services.score.domain.history import (
    CreditHistory,
    ObligationOutcome,
    ObligationRecord,
    RepaymentStatus,
    StatementRecord,
)

WINDOW_START = datetime(2005, 1, 1, tzinfo=UTC)
WINDOW_END = datetime(2006, 3, 1, tzinfo=UTC)
AS_OF_TIMES = [datetime(2005, month, 1, tzinfo=UTC) for month in (7, 8, 9, 10, 11, 12)]


@st.composite
def statements(draw: st.DrawFn, min_size: int = 0) -> tuple[StatementRecord, ...]:
    months = draw(st.sets(st.integers(0, 11), min_size=min_size, max_size=8))
    records = []
    for offset in sorted(months):
        year, month = (2005, 11 - offset) if offset < 11 else (2004, 12)
        status = draw(st.sampled_from(RepaymentStatus))
        records.append(
            StatementRecord(
                year,
                month,
                balance_minor=draw(st.integers(-50_000_00, 800_000_00)),
                amount_paid_minor=draw(st.integers(0, 300_000_00)),
                repayment_status=status,
                months_late=draw(st.integers(1, 8)) if status is RepaymentStatus.LATE else 0,
            )
        )
    return tuple(records)


@st.composite
def obligations(draw: st.DrawFn, outcome: ObligationOutcome | None = None) -> ObligationRecord:
    outcome = outcome or draw(st.sampled_from(ObligationOutcome))
    due_minor = draw(st.integers(1, 5_000_00))
    paid_in_full = outcome in (ObligationOutcome.ON_TIME, ObligationOutcome.LATE)
    return ObligationRecord(
        amount_due_minor=due_minor,
        amount_paid_minor=due_minor if paid_in_full else draw(st.integers(0, due_minor)),
        due_at=draw(
            st.datetimes(
                WINDOW_START.replace(tzinfo=None),
                WINDOW_END.replace(tzinfo=None),
                timezones=st.just(UTC),
            )
        ),
        outcome=outcome,
        days_late=draw(st.integers(1, 400)) if outcome is ObligationOutcome.LATE else 0,
    )


@st.composite
def histories(
    draw: st.DrawFn, *, with_credit_line: bool | None = None, min_statements: int = 0
) -> CreditHistory:
    line = st.integers(1, 2_000_000_00)
    if with_credit_line is None:
        line = st.none() | line
    elif not with_credit_line:
        line = st.none()
    return CreditHistory(
        credit_line_minor=draw(line),
        statements=draw(statements(min_statements)),
        obligations=tuple(draw(st.lists(obligations(), max_size=6))),
        as_of=draw(st.sampled_from(AS_OF_TIMES)),
    )
