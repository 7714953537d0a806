"""Validation of commands: everything that can be said about a request without the ledger's state.

Every problem found is reported at once (see `services.common.validation`). Each `check_*` adds
a request's problems to a `Violations` it is given, so that the API layer can report them with
those it found itself in reading the request; each `validate_*` checks and raises.
"""

from __future__ import annotations

from services.common.validation import Sign, Violations
from services.ledger.domain import commands, reasons
from services.ledger.domain.checkpoints import RESERVED_USER_PREFIX
from services.ledger.domain.records import (
    MICROSECONDS_PER_DAY,
    MICROSECONDS_PER_SECOND,
    ConsentState,
    ObligationOutcome,
    RepaymentStatus,
    StatementPeriod,
)

REFERENCE_LENGTH_MAX = 128
PURPOSE_LENGTH_MAX = 256
CAPACITY_REASON_LENGTH_MAX = 256
REDUCTION_REASON_LENGTH_MAX = 256
# A person's statement on a negative record: a few sentences, as much as a person reads beside
# the record at a glance.
ATTACHED_STATEMENT_LENGTH_MAX = 500
HOLD_DURATION_MAX_US = 366 * MICROSECONDS_PER_DAY
DAYS_LATE_MAX = 3650
MONTHS_LATE_MAX = 99
STATEMENT_YEAR_MIN = 1900
STATEMENT_YEAR_MAX = 9999
STATEMENTS_PER_REPORT_MAX = 24
REPORTS_PER_BATCH_MAX = 1000
CREDIT_HISTORY_STATEMENTS_MAX = 24
# The earliest an obligation may be due: 2000-01-01T00:00:00Z. Sesame's obligations are created
# now and due within days or months; one due decades ago is a client's zero or epoch time, and
# would count as paid late (or defaulted) since before anyone could owe it. A fixed bound, not
# one relative to the ledger's clock, keeps the same request always valid or always invalid.
DUE_TIME_MIN_US = 946_684_800 * MICROSECONDS_PER_SECOND


def check_user_id(violations: Violations, field: str, user_id: str) -> None:
    """A user a mutation writes to: an identifier, and none of the ledger's own chains (ids
    beginning with "$", which hold the ledger's checkpoints)."""
    if user_id.startswith(RESERVED_USER_PREFIX):
        violations.add(
            field, reasons.ID_INVALID, "must not begin with '$' (reserved for the ledger)"
        )
    else:
        violations.identifier(field, user_id)


def validate_set_waiver_capacity(command: commands.SetWaiverCapacity) -> None:
    violations = Violations()
    check_set_waiver_capacity(violations, command)
    violations.raise_if_any()


def check_set_waiver_capacity(violations: Violations, command: commands.SetWaiverCapacity) -> None:
    violations.request_id(command.request_id)
    check_user_id(violations, "user_id", command.user_id)
    violations.money("capacity", command.capacity, Sign.NOT_NEGATIVE)
    violations.text("reason", command.reason, CAPACITY_REASON_LENGTH_MAX)


def validate_place_hold(command: commands.PlaceHold) -> None:
    violations = Violations()
    check_place_hold(violations, command)
    violations.raise_if_any()


def check_place_hold(violations: Violations, command: commands.PlaceHold) -> None:
    violations.request_id(command.request_id)
    check_user_id(violations, "user_id", command.user_id)
    violations.money("amount", command.amount, Sign.POSITIVE)
    if command.expires_in_us is None:
        violations.add("expires_in", reasons.FIELD_REQUIRED, "is required")
    elif not 0 < command.expires_in_us <= HOLD_DURATION_MAX_US:
        violations.add(
            "expires_in", reasons.DURATION_INVALID, "must be positive and at most 366 days"
        )
    violations.text("reference", command.reference, REFERENCE_LENGTH_MAX)


def validate_capture_hold(command: commands.CaptureHold) -> None:
    violations = Violations()
    check_capture_hold(violations, command)
    violations.raise_if_any()


def check_capture_hold(violations: Violations, command: commands.CaptureHold) -> None:
    violations.request_id(command.request_id)
    violations.identifier("hold_id", command.hold_id)
    violations.money("amount", command.amount, Sign.POSITIVE)
    if command.obligation is not None:
        _check_due_time(violations, "obligation.due_time", command.obligation.due_at_us)
        violations.text("obligation.purpose", command.obligation.purpose, PURPOSE_LENGTH_MAX)


def validate_release_hold(command: commands.ReleaseHold) -> None:
    violations = Violations()
    check_release_hold(violations, command)
    violations.raise_if_any()


def check_release_hold(violations: Violations, command: commands.ReleaseHold) -> None:
    violations.request_id(command.request_id)
    violations.identifier("hold_id", command.hold_id)


def validate_create_obligation(command: commands.CreateObligation) -> None:
    violations = Violations()
    check_create_obligation(violations, command)
    violations.raise_if_any()


def check_create_obligation(violations: Violations, command: commands.CreateObligation) -> None:
    violations.request_id(command.request_id)
    check_user_id(violations, "user_id", command.user_id)
    violations.money("amount_due", command.amount_due, Sign.POSITIVE)
    _check_due_time(violations, "due_time", command.due_at_us)
    violations.text("purpose", command.purpose, PURPOSE_LENGTH_MAX)
    violations.text("reference", command.reference, REFERENCE_LENGTH_MAX)


def _check_due_time(violations: Violations, field: str, due_at_us: int | None) -> None:
    if due_at_us is None:
        violations.add(field, reasons.FIELD_REQUIRED, "is required")
    elif due_at_us < DUE_TIME_MIN_US:
        violations.add(field, reasons.DUE_TIME_TOO_EARLY, "must not be before 2000-01-01 UTC")


def validate_record_payment(command: commands.RecordPayment) -> None:
    violations = Violations()
    check_record_payment(violations, command)
    violations.raise_if_any()


def check_record_payment(violations: Violations, command: commands.RecordPayment) -> None:
    violations.request_id(command.request_id)
    violations.identifier("obligation_id", command.obligation_id)
    violations.money("amount", command.amount, Sign.POSITIVE)


def validate_close_obligation(command: commands.CloseObligation) -> None:
    violations = Violations()
    check_close_obligation(violations, command)
    violations.raise_if_any()


def check_close_obligation(violations: Violations, command: commands.CloseObligation) -> None:
    violations.request_id(command.request_id)
    violations.identifier("obligation_id", command.obligation_id)
    violations.required("outcome", command.outcome)
    if command.outcome is ObligationOutcome.LATE:
        if not 1 <= command.days_late <= DAYS_LATE_MAX:
            violations.add(
                "days_late", reasons.DAYS_LATE_INVALID, f"must be 1 to {DAYS_LATE_MAX} when LATE"
            )
    elif command.outcome is not None and command.days_late != 0:
        # Without an outcome days_late cannot be judged: the missing outcome is the problem.
        violations.add("days_late", reasons.DAYS_LATE_INVALID, "must be zero unless LATE")


def validate_reduce_obligation(command: commands.ReduceObligation) -> None:
    violations = Violations()
    check_reduce_obligation(violations, command)
    violations.raise_if_any()


def check_reduce_obligation(violations: Violations, command: commands.ReduceObligation) -> None:
    violations.request_id(command.request_id)
    violations.identifier("obligation_id", command.obligation_id)
    # Zero is a valid amount due: a discount may waive the whole of what was not yet paid.
    violations.money("amount_due", command.amount_due, Sign.NOT_NEGATIVE)
    violations.text("reason", command.reason, REDUCTION_REASON_LENGTH_MAX)


def validate_record_partner_statements(command: commands.RecordPartnerStatements) -> None:
    violations = Violations()
    check_record_partner_statements(violations, command)
    violations.raise_if_any()


def check_record_partner_statements(
    violations: Violations, command: commands.RecordPartnerStatements
) -> None:
    violations.request_id(command.request_id)
    if not 1 <= len(command.reports) <= REPORTS_PER_BATCH_MAX:
        violations.add(
            "reports", reasons.BATCH_SIZE_INVALID, f"must hold 1 to {REPORTS_PER_BATCH_MAX} reports"
        )
    seen_users: set[str] = set()
    for index, report in enumerate(command.reports[:REPORTS_PER_BATCH_MAX]):
        field = f"reports[{index}]"
        _check_partner_report(violations, field, report)
        if report.user_id in seen_users:
            violations.add(
                f"{field}.user_id", reasons.DUPLICATE_USER, "appears in more than one report"
            )
        seen_users.add(report.user_id)


def _check_partner_report(
    violations: Violations, field: str, report: commands.PartnerReport
) -> None:
    check_user_id(violations, f"{field}.user_id", report.user_id)
    violations.identifier(f"{field}.partner_id", report.partner_id)
    if report.credit_line is not None:
        violations.money(f"{field}.credit_line", report.credit_line, Sign.POSITIVE)
    if len(report.statements) > STATEMENTS_PER_REPORT_MAX:
        violations.add(
            f"{field}.statements",
            reasons.TOO_MANY_STATEMENTS,
            f"must hold at most {STATEMENTS_PER_REPORT_MAX} statements",
        )
    # One currency per report: the credit line's, else the first statement's (see
    # `rules.require_partner_currency` for why a user's partner data never mixes currencies).
    report_currency = report.credit_line.currency_code if report.credit_line is not None else None
    seen_periods: set[StatementPeriod] = set()
    for index, statement in enumerate(report.statements[:STATEMENTS_PER_REPORT_MAX]):
        statement_field = f"{field}.statements[{index}]"
        _check_statement(violations, statement_field, statement)
        if statement.balance is not None:
            if report_currency is None:
                report_currency = statement.balance.currency_code
            elif statement.balance.currency_code != report_currency:
                violations.add(
                    f"{statement_field}.balance.currency_code",
                    reasons.CURRENCY_MISMATCH,
                    "must be the currency of the report's credit line and other statements",
                )
        if statement.period is not None:
            if statement.period in seen_periods:
                violations.add(
                    f"{statement_field}.period",
                    reasons.DUPLICATE_PERIOD,
                    "appears more than once in the report",
                )
            seen_periods.add(statement.period)


def _check_statement(
    violations: Violations, field: str, statement: commands.StatementReport
) -> None:
    if statement.period is None:
        violations.add(f"{field}.period", reasons.FIELD_REQUIRED, "is required")
    else:
        if not STATEMENT_YEAR_MIN <= statement.period.year <= STATEMENT_YEAR_MAX:
            violations.add(
                f"{field}.period.year",
                reasons.PERIOD_INVALID,
                f"must be {STATEMENT_YEAR_MIN} to {STATEMENT_YEAR_MAX}",
            )
        if not 1 <= statement.period.month <= 12:
            violations.add(f"{field}.period.month", reasons.PERIOD_INVALID, "must be 1 to 12")
    violations.money(f"{field}.balance", statement.balance, Sign.ANY)
    violations.money(f"{field}.amount_paid", statement.amount_paid, Sign.NOT_NEGATIVE)
    if (
        statement.balance is not None
        and statement.amount_paid is not None
        and statement.balance.currency_code != statement.amount_paid.currency_code
    ):
        violations.add(
            f"{field}.amount_paid.currency_code",
            reasons.CURRENCY_MISMATCH,
            "must be the currency of the balance",
        )
    violations.required(f"{field}.repayment_status", statement.repayment_status)
    if statement.repayment_status is RepaymentStatus.LATE:
        if not 1 <= statement.months_late <= MONTHS_LATE_MAX:
            violations.add(
                f"{field}.months_late",
                reasons.MONTHS_LATE_INVALID,
                f"must be 1 to {MONTHS_LATE_MAX} when LATE",
            )
    elif statement.repayment_status is not None and statement.months_late != 0:
        # Without a status months_late cannot be judged: the missing status is the problem.
        violations.add(
            f"{field}.months_late", reasons.MONTHS_LATE_INVALID, "must be zero unless LATE"
        )


def validate_record_consent(command: commands.RecordConsent) -> None:
    violations = Violations()
    check_record_consent(violations, command)
    violations.raise_if_any()


def check_record_consent(violations: Violations, command: commands.RecordConsent) -> None:
    violations.request_id(command.request_id)
    check_user_id(violations, "user_id", command.user_id)
    violations.required("state", command.state)
    if command.state is ConsentState.NOT_GIVEN:
        violations.add("state", reasons.ENUM_VALUE_INVALID, "must be GRANTED or WITHDRAWN")


def validate_attach_statement(command: commands.AttachStatement) -> None:
    violations = Violations()
    check_attach_statement(violations, command)
    violations.raise_if_any()


def check_attach_statement(violations: Violations, command: commands.AttachStatement) -> None:
    violations.request_id(command.request_id)
    check_user_id(violations, "user_id", command.user_id)
    violations.identifier("obligation_id", command.obligation_id)
    violations.text("text", command.text.strip(), ATTACHED_STATEMENT_LENGTH_MAX, required=True)


def check_credit_history_query(violations: Violations, user_id: str, max_statements: int) -> None:
    """GetCreditHistory's own fields: the user and how many statements (0 means the default)."""
    violations.identifier("user_id", user_id)
    violations.in_range("max_statements", max_statements, 0, CREDIT_HISTORY_STATEMENTS_MAX)
