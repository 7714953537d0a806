"""Bad input is rejected with the offending field named, and nothing is written.

Each case names the RPC, how to spoil a valid request, and the expected code, reason and field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sesame.ledger.v1 import ledger_service_pb2 as pb
from sesame.type.v1 import money_pb2

INT64_MAX = 2**63 - 1
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def cny(amount_minor: int, currency_code: str = "CNY") -> money_pb2.Money:
    return money_pb2.Money(currency_code=currency_code, amount_minor=amount_minor)


def place_hold(**changes: Any) -> pb.PlaceHoldRequest:
    """A valid PlaceHold request with the given fields changed (None clears a field)."""
    request = pb.PlaceHoldRequest(request_id="bad-1", user_id="user-1", amount=cny(100))
    request.expires_in.seconds = changes.pop("expires_in_seconds", 3600)
    for field, value in changes.items():
        if value is None:
            request.ClearField(field)
        elif isinstance(value, money_pb2.Money):
            getattr(request, field).CopyFrom(value)
        else:
            setattr(request, field, value)
    return request


def statement_report(**statement_fields: Any) -> pb.RecordPartnerStatementsRequest:
    statement = pb.Statement(
        period=pb.StatementPeriod(year=2005, month=4),
        balance=cny(0, "TWD"),
        amount_paid=cny(0, "TWD"),
        repayment_status=pb.REPAYMENT_STATUS_REVOLVING,
    )
    for field, value in statement_fields.items():
        if field == "month":
            statement.period.month = value
        else:
            setattr(statement, field, value)
    report = pb.PartnerReport(user_id="user-1", partner_id="bank", statements=[statement])
    return pb.RecordPartnerStatementsRequest(request_id="bad-1", reports=[report])


def due_tomorrow() -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=1_767_312_000)


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    request: Any  # a message, or a function of the open hold's id giving one
    code: grpc.StatusCode
    reason: str
    field: str | None

    def build(self, hold_id: str) -> Any:
        return self.request(hold_id) if callable(self.request) else self.request


CASES = [
    Case(
        "zero amount",
        "PlaceHold",
        place_hold(amount=cny(0)),
        INVALID,
        "AMOUNT_NOT_POSITIVE",
        "amount.amount_minor",
    ),
    Case(
        "negative amount",
        "PlaceHold",
        place_hold(amount=cny(-5)),
        INVALID,
        "AMOUNT_NOT_POSITIVE",
        "amount.amount_minor",
    ),
    Case(
        "int64 max amount",
        "PlaceHold",
        place_hold(amount=cny(INT64_MAX)),
        INVALID,
        "AMOUNT_TOO_LARGE",
        "amount.amount_minor",
    ),
    Case("unset amount", "PlaceHold", place_hold(amount=None), INVALID, "FIELD_REQUIRED", "amount"),
    Case(
        "unknown currency",
        "PlaceHold",
        place_hold(amount=cny(100, "XYZ")),
        INVALID,
        "CURRENCY_UNKNOWN",
        "amount.currency_code",
    ),
    Case(
        "lower-case currency",
        "PlaceHold",
        place_hold(amount=cny(100, "cny")),
        INVALID,
        "CURRENCY_UNKNOWN",
        "amount.currency_code",
    ),
    Case(
        "empty user id", "PlaceHold", place_hold(user_id=""), INVALID, "FIELD_REQUIRED", "user_id"
    ),
    Case(
        "oversized user id",
        "PlaceHold",
        place_hold(user_id="u" * 129),
        INVALID,
        "ID_INVALID",
        "user_id",
    ),
    Case(
        "user id with a newline",
        "PlaceHold",
        place_hold(user_id="user\n1"),
        INVALID,
        "ID_INVALID",
        "user_id",
    ),
    Case(
        "empty request id",
        "PlaceHold",
        place_hold(request_id=""),
        INVALID,
        "REQUEST_ID_REQUIRED",
        "request_id",
    ),
    Case(
        "oversized request id",
        "PlaceHold",
        place_hold(request_id="r" * 129),
        INVALID,
        "ID_INVALID",
        "request_id",
    ),
    Case(
        "zero expiry",
        "PlaceHold",
        place_hold(expires_in_seconds=0),
        INVALID,
        "DURATION_INVALID",
        "expires_in",
    ),
    Case(
        "negative expiry",
        "PlaceHold",
        place_hold(expires_in_seconds=-60),
        INVALID,
        "DURATION_INVALID",
        "expires_in",
    ),
    Case(
        "expiry beyond a year",
        "PlaceHold",
        place_hold(expires_in_seconds=367 * 86_400),
        INVALID,
        "DURATION_INVALID",
        "expires_in",
    ),
    Case(
        "unset expiry",
        "PlaceHold",
        place_hold(expires_in=None),
        INVALID,
        "FIELD_REQUIRED",
        "expires_in",
    ),
    Case(
        "oversized reference",
        "PlaceHold",
        place_hold(reference="r" * 129),
        INVALID,
        "TEXT_TOO_LONG",
        "reference",
    ),
    Case(
        "empty hold id",
        "CaptureHold",
        pb.CaptureHoldRequest(request_id="bad-1", amount=cny(1)),
        INVALID,
        "FIELD_REQUIRED",
        "hold_id",
    ),
    Case(
        "oversized hold id",
        "CaptureHold",
        pb.CaptureHoldRequest(request_id="bad-1", hold_id="h" * 129, amount=cny(1)),
        INVALID,
        "ID_INVALID",
        "hold_id",
    ),
    Case(
        "capture above the hold",
        "CaptureHold",
        lambda hold_id: pb.CaptureHoldRequest(
            request_id="bad-1", hold_id=hold_id, amount=cny(1_001)
        ),
        INVALID,
        "CAPTURE_EXCEEDS_HOLD",
        "amount.amount_minor",
    ),
    Case(
        "capture in another currency",
        "CaptureHold",
        lambda hold_id: pb.CaptureHoldRequest(
            request_id="bad-1", hold_id=hold_id, amount=cny(1, "USD")
        ),
        INVALID,
        "CURRENCY_MISMATCH",
        "amount.currency_code",
    ),
    Case(
        "capture with an obligation but no due time",
        "CaptureHold",
        lambda hold_id: pb.CaptureHoldRequest(
            request_id="bad-1",
            hold_id=hold_id,
            amount=cny(1),
            obligation=pb.ObligationTerms(purpose="fee"),
        ),
        INVALID,
        "FIELD_REQUIRED",
        "obligation.due_time",
    ),
    Case(
        "unknown hold",
        "CaptureHold",
        pb.CaptureHoldRequest(request_id="bad-1", hold_id="hold_unknown", amount=cny(1)),
        grpc.StatusCode.NOT_FOUND,
        "HOLD_NOT_FOUND",
        None,
    ),
    Case(
        "release without request id",
        "ReleaseHold",
        lambda hold_id: pb.ReleaseHoldRequest(hold_id=hold_id),
        INVALID,
        "REQUEST_ID_REQUIRED",
        "request_id",
    ),
    Case(
        "capacity without request id",
        "SetWaiverCapacity",
        pb.SetWaiverCapacityRequest(user_id="user-1", capacity=cny(5)),
        INVALID,
        "REQUEST_ID_REQUIRED",
        "request_id",
    ),
    Case(
        "negative capacity",
        "SetWaiverCapacity",
        pb.SetWaiverCapacityRequest(request_id="bad-1", user_id="user-1", capacity=cny(-1)),
        INVALID,
        "AMOUNT_NEGATIVE",
        "capacity.amount_minor",
    ),
    Case(
        "obligation without request id",
        "CreateObligation",
        pb.CreateObligationRequest(user_id="user-1", amount_due=cny(5), due_time=due_tomorrow()),
        INVALID,
        "REQUEST_ID_REQUIRED",
        "request_id",
    ),
    Case(
        "obligation without due time",
        "CreateObligation",
        pb.CreateObligationRequest(request_id="bad-1", user_id="user-1", amount_due=cny(5)),
        INVALID,
        "FIELD_REQUIRED",
        "due_time",
    ),
    Case(
        "obligation due beyond year 9999",
        "CreateObligation",
        pb.CreateObligationRequest(
            request_id="bad-1",
            user_id="user-1",
            amount_due=cny(5),
            due_time=timestamp_pb2.Timestamp(seconds=253_402_300_800),
        ),
        INVALID,
        "TIMESTAMP_INVALID",
        "due_time",
    ),
    Case(
        "payment without request id",
        "RecordPayment",
        pb.RecordPaymentRequest(obligation_id="o", amount=cny(5)),
        INVALID,
        "REQUEST_ID_REQUIRED",
        "request_id",
    ),
    Case(
        "closing without request id",
        "CloseObligation",
        pb.CloseObligationRequest(obligation_id="o", outcome=pb.OBLIGATION_OUTCOME_DEFAULTED),
        INVALID,
        "REQUEST_ID_REQUIRED",
        "request_id",
    ),
    Case(
        "closing without outcome",
        "CloseObligation",
        pb.CloseObligationRequest(request_id="bad-1", obligation_id="o"),
        INVALID,
        "FIELD_REQUIRED",
        "outcome",
    ),
    Case(
        "closing with an undefined outcome",
        "CloseObligation",
        pb.CloseObligationRequest(request_id="bad-1", obligation_id="o", outcome=9),
        INVALID,
        "ENUM_VALUE_INVALID",
        "outcome",
    ),
    Case(
        "reduction without request id",
        "ReduceObligation",
        pb.ReduceObligationRequest(obligation_id="o", amount_due=cny(5)),
        INVALID,
        "REQUEST_ID_REQUIRED",
        "request_id",
    ),
    Case(
        "reduction without amount due",
        "ReduceObligation",
        pb.ReduceObligationRequest(request_id="bad-1", obligation_id="o"),
        INVALID,
        "FIELD_REQUIRED",
        "amount_due",
    ),
    Case(
        "reduction to a negative amount",
        "ReduceObligation",
        pb.ReduceObligationRequest(request_id="bad-1", obligation_id="o", amount_due=cny(-1)),
        INVALID,
        "AMOUNT_NEGATIVE",
        "amount_due.amount_minor",
    ),
    Case(
        "reduction with too long a reason",
        "ReduceObligation",
        pb.ReduceObligationRequest(
            request_id="bad-1", obligation_id="o", amount_due=cny(5), reason="r" * 257
        ),
        INVALID,
        "TEXT_TOO_LONG",
        "reason",
    ),
    Case(
        "reduction of an unknown obligation",
        "ReduceObligation",
        pb.ReduceObligationRequest(request_id="bad-1", obligation_id="o", amount_due=cny(5)),
        grpc.StatusCode.NOT_FOUND,
        "OBLIGATION_NOT_FOUND",
        None,
    ),
    Case(
        "statements without request id",
        "RecordPartnerStatements",
        pb.RecordPartnerStatementsRequest(reports=statement_report().reports),
        INVALID,
        "REQUEST_ID_REQUIRED",
        "request_id",
    ),
    Case(
        "statement month 13",
        "RecordPartnerStatements",
        statement_report(month=13),
        INVALID,
        "PERIOD_INVALID",
        "reports[0].statements[0].period.month",
    ),
    Case(
        "late without months late",
        "RecordPartnerStatements",
        statement_report(repayment_status=pb.REPAYMENT_STATUS_LATE),
        INVALID,
        "MONTHS_LATE_INVALID",
        "reports[0].statements[0].months_late",
    ),
    Case(
        "months late without late",
        "RecordPartnerStatements",
        statement_report(months_late=2),
        INVALID,
        "MONTHS_LATE_INVALID",
        "reports[0].statements[0].months_late",
    ),
    Case(
        "statement without status",
        "RecordPartnerStatements",
        statement_report(repayment_status=pb.REPAYMENT_STATUS_UNSPECIFIED),
        INVALID,
        "FIELD_REQUIRED",
        "reports[0].statements[0].repayment_status",
    ),
    Case(
        "empty batch",
        "RecordPartnerStatements",
        pb.RecordPartnerStatementsRequest(request_id="bad-1"),
        INVALID,
        "BATCH_SIZE_INVALID",
        "reports",
    ),
    Case(
        "summary of no user",
        "GetAccountSummary",
        pb.GetAccountSummaryRequest(),
        INVALID,
        "FIELD_REQUIRED",
        "user_id",
    ),
    Case(
        "history of 25 statements",
        "GetCreditHistory",
        pb.GetCreditHistoryRequest(user_id="user-1", max_statements=25),
        INVALID,
        "VALUE_OUT_OF_RANGE",
        "max_statements",
    ),
    Case(
        "sweep of too many holds",
        "SweepExpiredHolds",
        pb.SweepExpiredHoldsRequest(max_holds=10_001),
        INVALID,
        "VALUE_OUT_OF_RANGE",
        "max_holds",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_rejected_and_writes_nothing(client, case):
    client.set_capacity("user-1", 10_000)
    hold = client.place_hold("user-1", 1_000)
    entries, stored_requests = client.entry_count(), client.stored_request_count()

    code, reason, fields = client.rejection(
        lambda: client.call(case.method, case.build(hold.hold_id))
    )

    assert (code, reason) == (case.code, case.reason)
    if case.field is not None:
        assert fields[0] == case.field
    assert client.entry_count() == entries
    assert client.stored_request_count() == stored_requests


def test_every_problem_of_a_request_is_reported_at_once(client):
    request = place_hold(request_id="", user_id="", amount=cny(0, "xyz"), expires_in_seconds=0)

    code, reason, fields = client.rejection(lambda: client.call("PlaceHold", request))

    assert (code, reason) == (INVALID, "REQUEST_ID_REQUIRED")
    assert fields == (
        "request_id",
        "user_id",
        "amount.currency_code",
        "amount.amount_minor",
        "expires_in",
    )


def test_control_characters_in_free_text_are_invalid(client):
    request = place_hold(reference="order\x0042")

    code, reason, fields = client.rejection(lambda: client.call("PlaceHold", request))

    assert (code, reason, fields) == (INVALID, "TEXT_INVALID", ("reference",))


# ----------------------------------------------------------------------------------------------
# Several bad fields at once: what the API layer reads (times, durations, enums, page tokens) is
# reported together with what validation finds, each field with its own reason, in one error.

YEAR_10000 = timestamp_pb2.Timestamp(seconds=253_402_300_800)


def field_violations(call: Any) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str], ...]]:
    """The status code, ErrorInfo reason and (field, reason) of every BadRequest violation."""
    with pytest.raises(grpc.RpcError) as raised:
        call()
    status = rpc_status.from_call(raised.value)
    assert status is not None
    error_info, bad_request = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    for detail in status.details:
        if not detail.Unpack(error_info):
            detail.Unpack(bad_request)
    violations = tuple((item.field, item.reason) for item in bad_request.field_violations)
    return raised.value.code(), error_info.reason, violations


def test_a_bad_time_is_reported_with_every_other_bad_field(client):
    request = pb.CreateObligationRequest(
        user_id="user 1\n", amount_due=cny(0), due_time=YEAR_10000, purpose="p" * 257
    )

    code, reason, violations = field_violations(lambda: client.call("CreateObligation", request))

    assert (code, reason) == (INVALID, "REQUEST_ID_REQUIRED")
    assert violations == (
        ("request_id", "REQUEST_ID_REQUIRED"),
        ("user_id", "ID_INVALID"),
        ("amount_due.amount_minor", "AMOUNT_NOT_POSITIVE"),
        ("due_time", "TIMESTAMP_INVALID"),
        ("purpose", "TEXT_TOO_LONG"),
    )
    assert client.entry_count() == 0


def test_an_undefined_outcome_and_a_bad_close_time_are_reported_with_the_rest(client):
    request = pb.CloseObligationRequest(
        obligation_id="o" * 129,
        outcome=9,
        days_late=5,
        close_time=timestamp_pb2.Timestamp(seconds=1_767_312_000, nanos=-1),
    )

    code, reason, violations = field_violations(lambda: client.call("CloseObligation", request))

    # days_late cannot be judged without an outcome, so only the outcome is named for it.
    assert (code, reason) == (INVALID, "REQUEST_ID_REQUIRED")
    assert violations == (
        ("request_id", "REQUEST_ID_REQUIRED"),
        ("obligation_id", "ID_INVALID"),
        ("outcome", "ENUM_VALUE_INVALID"),
        ("close_time", "TIMESTAMP_INVALID"),
    )


def test_a_duration_that_is_not_one_is_reported_with_the_rest(client):
    request = place_hold(user_id="", amount=cny(0, "CNY"))
    request.expires_in.CopyFrom(duration_pb2.Duration(seconds=60, nanos=-1))

    code, reason, violations = field_violations(lambda: client.call("PlaceHold", request))

    assert (code, reason) == (INVALID, "FIELD_REQUIRED")
    assert violations == (
        ("user_id", "FIELD_REQUIRED"),
        ("amount.amount_minor", "AMOUNT_NOT_POSITIVE"),
        ("expires_in", "DURATION_INVALID"),
    )
    assert client.entry_count() == 0


def test_a_capture_names_its_bad_due_time_and_its_bad_amount(client):
    request = pb.CaptureHoldRequest(
        request_id="bad-1",
        hold_id="hold-1",
        amount=cny(-1),
        obligation=pb.ObligationTerms(due_time=YEAR_10000, purpose="fee\x00"),
    )

    code, reason, violations = field_violations(lambda: client.call("CaptureHold", request))

    assert (code, reason) == (INVALID, "AMOUNT_NOT_POSITIVE")
    assert violations == (
        ("amount.amount_minor", "AMOUNT_NOT_POSITIVE"),
        ("obligation.due_time", "TIMESTAMP_INVALID"),
        ("obligation.purpose", "TEXT_INVALID"),
    )


def test_a_reduction_names_every_bad_field_at_once(client):
    request = pb.ReduceObligationRequest(
        obligation_id="o\n", amount_due=cny(-5, "cny"), reason="discount\x07"
    )

    code, reason, violations = field_violations(lambda: client.call("ReduceObligation", request))

    assert (code, reason) == (INVALID, "REQUEST_ID_REQUIRED")
    assert violations == (
        ("request_id", "REQUEST_ID_REQUIRED"),
        ("obligation_id", "ID_INVALID"),
        ("amount_due.currency_code", "CURRENCY_UNKNOWN"),
        ("amount_due.amount_minor", "AMOUNT_NEGATIVE"),
        ("reason", "TEXT_INVALID"),
    )
    assert client.entry_count() == 0


def test_a_bad_paid_time_is_reported_with_the_missing_amount(client):
    request = pb.RecordPaymentRequest(request_id="bad-1", obligation_id="o", paid_time=YEAR_10000)

    code, reason, violations = field_violations(lambda: client.call("RecordPayment", request))

    assert (code, reason) == (INVALID, "FIELD_REQUIRED")
    assert violations == (("amount", "FIELD_REQUIRED"), ("paid_time", "TIMESTAMP_INVALID"))


def test_an_undefined_repayment_status_is_reported_with_every_other_bad_statement(client):
    request = statement_report(repayment_status=7, months_late=3)
    second = request.reports[0].statements.add()
    second.CopyFrom(request.reports[0].statements[0])
    second.repayment_status, second.months_late = pb.REPAYMENT_STATUS_PAID_IN_FULL, 0
    second.period.month = 13
    request.reports.add().CopyFrom(request.reports[0])
    request.reports[1].statements[1].period.month = 5

    code, reason, violations = field_violations(
        lambda: client.call("RecordPartnerStatements", request)
    )

    assert (code, reason) == (INVALID, "ENUM_VALUE_INVALID")
    assert violations == (
        ("reports[0].statements[0].repayment_status", "ENUM_VALUE_INVALID"),
        ("reports[0].statements[1].period.month", "PERIOD_INVALID"),
        ("reports[1].statements[0].repayment_status", "ENUM_VALUE_INVALID"),
        ("reports[1].user_id", "DUPLICATE_USER"),
    )
    assert client.entry_count() == 0


def test_a_bad_as_of_time_is_reported_with_the_other_bad_fields_of_a_read(client):
    request = pb.GetCreditHistoryRequest(max_statements=25, as_of_time=YEAR_10000)

    code, reason, violations = field_violations(lambda: client.call("GetCreditHistory", request))

    assert (code, reason) == (INVALID, "FIELD_REQUIRED")
    assert violations == (
        ("user_id", "FIELD_REQUIRED"),
        ("max_statements", "VALUE_OUT_OF_RANGE"),
        ("as_of_time", "TIMESTAMP_INVALID"),
    )


def test_a_bad_page_token_is_reported_with_a_bad_page_size(client):
    request = pb.ListEntriesRequest(user_id="user\t1", page_size=1001, page_token="not-a-token")

    code, reason, violations = field_violations(lambda: client.call("ListEntries", request))

    assert (code, reason) == (INVALID, "ID_INVALID")
    assert violations == (
        ("user_id", "ID_INVALID"),
        ("page_size", "VALUE_OUT_OF_RANGE"),
        ("page_token", "PAGE_TOKEN_INVALID"),
    )
