"""Validation names every offending field by its path in the request."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.common.money import MAX_AMOUNT_MINOR, Money, is_known_currency
from services.common.validation import VIOLATIONS_REPORTED_MAX, id_problem
from services.ledger.domain import commands, validation
from services.ledger.domain.records import RepaymentStatus, StatementPeriod


def problems(validate, command):
    with pytest.raises(InvalidArgument) as invalid:
        validate(command)
    return invalid.value.reason, [violation.field for violation in invalid.value.field_violations]


def statement(month=4, status=RepaymentStatus.REVOLVING, months_late=0, paid=0):
    return commands.StatementReport(
        StatementPeriod(2005, month), Money("TWD", -5), Money("TWD", paid), status, months_late
    )


def report(user_id="user-1", statements=()):
    return commands.PartnerReport(user_id, "bank", Money("TWD", 1), tuple(statements))


def test_nested_fields_are_named_by_their_path():
    batch = commands.RecordPartnerStatements(
        "r",
        (
            *(report(f"user-{index}") for index in range(3)),
            report("user-3", [statement(), statement(month=5), statement(month=13)]),
        ),
    )

    reason, fields = problems(validation.validate_record_partner_statements, batch)

    assert (reason, fields) == ("PERIOD_INVALID", ["reports[3].statements[2].period.month"])


def test_every_problem_is_reported_with_the_first_ones_reason():
    command = commands.PlaceHold("", "", Money("xyz", -1), 0, "r" * 129)

    reason, fields = problems(validation.validate_place_hold, command)

    assert reason == "REQUEST_ID_REQUIRED"
    assert fields == [
        "request_id",
        "user_id",
        "amount.currency_code",
        "amount.amount_minor",
        "expires_in",
        "reference",
    ]


def test_the_violations_reported_are_bounded():
    batch = commands.RecordPartnerStatements(
        "r", tuple(report(f"user-{index}", [statement(month=13)]) for index in range(200))
    )

    with pytest.raises(InvalidArgument) as invalid:
        validation.validate_record_partner_statements(batch)

    assert len(invalid.value.field_violations) == VIOLATIONS_REPORTED_MAX
    assert "more" in invalid.value.message


@pytest.mark.parametrize(
    ("statement_report", "field", "reason"),
    [
        (statement(status=RepaymentStatus.LATE), "months_late", "MONTHS_LATE_INVALID"),
        (
            statement(status=RepaymentStatus.LATE, months_late=100),
            "months_late",
            "MONTHS_LATE_INVALID",
        ),
        (statement(months_late=1), "months_late", "MONTHS_LATE_INVALID"),
        (statement(paid=-1), "amount_paid.amount_minor", "AMOUNT_NEGATIVE"),
        (statement(status=None), "repayment_status", "FIELD_REQUIRED"),
    ],
)
def test_statement_rules(statement_report, field, reason):
    batch = commands.RecordPartnerStatements("r", (report(statements=[statement_report]),))

    assert problems(validation.validate_record_partner_statements, batch) == (
        reason,
        [f"reports[0].statements[0].{field}"],
    )


def test_a_statement_with_a_negative_balance_is_valid():
    batch = commands.RecordPartnerStatements("r", (report(statements=[statement()]),))

    validation.validate_record_partner_statements(batch)


@pytest.mark.parametrize(
    ("amount_minor", "reason"),
    [
        (0, "AMOUNT_NOT_POSITIVE"),
        (-1, "AMOUNT_NOT_POSITIVE"),
        (MAX_AMOUNT_MINOR, "AMOUNT_TOO_LARGE"),
    ],
)
def test_hold_amounts_are_positive_and_bounded(amount_minor, reason):
    command = commands.PlaceHold("r", "u", Money("CNY", amount_minor), 1)

    assert problems(validation.validate_place_hold, command) == (reason, ["amount.amount_minor"])


def test_ids_are_one_to_128_printable_ascii_characters():
    assert id_problem("a") is None
    assert id_problem("order 42/hold-1") is None
    assert id_problem("x" * 128) is None
    assert id_problem("") == "is required"
    assert id_problem("x" * 129) is not None
    assert id_problem("tab\there") is not None
    assert id_problem("café") is not None


def test_currencies_are_iso_codes_in_upper_case():
    assert is_known_currency("CNY") and is_known_currency("TWD") and is_known_currency("JPY")
    assert not is_known_currency("cny")
    assert not is_known_currency("XYZ")
    assert not is_known_currency("")


def test_a_reduction_names_every_bad_field():
    command = commands.ReduceObligation("", "o" * 129, Money("cny", -1), "r" * 257)

    reason, fields = problems(validation.validate_reduce_obligation, command)

    assert reason == "REQUEST_ID_REQUIRED"
    assert fields == [
        "request_id",
        "obligation_id",
        "amount_due.currency_code",
        "amount_due.amount_minor",
        "reason",
    ]


@pytest.mark.parametrize(
    ("amount_due", "reason", "field"),
    [
        (None, "FIELD_REQUIRED", "amount_due"),
        (Money("CNY", -1), "AMOUNT_NEGATIVE", "amount_due.amount_minor"),
        (Money("CNY", MAX_AMOUNT_MINOR), "AMOUNT_TOO_LARGE", "amount_due.amount_minor"),
    ],
)
def test_a_reduction_needs_an_amount_due_of_zero_or_more(amount_due, reason, field):
    command = commands.ReduceObligation("r", "o", amount_due)

    assert problems(validation.validate_reduce_obligation, command) == (reason, [field])


def test_a_reduction_to_zero_with_a_reason_is_valid():
    validation.validate_reduce_obligation(
        commands.ReduceObligation("r", "o", Money("CNY", 0), "r" * 256)
    )
