"""What an adversarial probe of the ledger found, each request sent as the probe sent it, through
gRPC, on SQLite and PostgreSQL: every one is now refused with INVALID_ARGUMENT (or, where the
answer depends on what the ledger holds, FAILED_PRECONDITION) and a reason of the contract, and
nothing is written.
"""

from __future__ import annotations

import base64
import json

import grpc
import pytest
from google.protobuf import duration_pb2
from sesame.ledger.v1 import ledger_service_pb2 as pb

INT64_MAX = 2**63 - 1
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def forged_page_token(*, user_id: str = "", global_sequence: int, user_sequence: int) -> str:
    """A page token as the ledger writes one (base64 of its canonical JSON), with any values."""
    plain = {
        "after_global_sequence": global_sequence,
        "after_user_sequence": user_sequence,
        "user_id": user_id,
    }
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii")


@pytest.mark.parametrize(
    ("user_id", "global_sequence", "user_sequence"),
    [
        ("", INT64_MAX + 1, 0),
        ("user-a", 0, INT64_MAX + 1),
        ("", 10**30, 10**30),
        ("", -1, 0),
    ],
    ids=["global beyond int64", "user beyond int64", "far beyond int64", "negative"],
)
def test_a_forged_page_token_out_of_int64_is_page_token_invalid(
    client, user_id, global_sequence, user_sequence
):
    client.set_capacity("user-a", 1_000)
    token = forged_page_token(
        user_id=user_id, global_sequence=global_sequence, user_sequence=user_sequence
    )
    request = pb.ListEntriesRequest(user_id=user_id, page_token=token)

    code, reason, fields = client.rejection(lambda: client.call("ListEntries", request))

    assert (code, reason, fields) == (INVALID, "PAGE_TOKEN_INVALID", ("page_token",))


def test_a_page_token_at_the_largest_sequence_reads_an_empty_page(client):
    client.set_capacity("user-a", 1_000)
    for user_id in ("", "user-a"):
        token = forged_page_token(
            user_id=user_id, global_sequence=INT64_MAX, user_sequence=INT64_MAX
        )

        page = client.call("ListEntries", pb.ListEntriesRequest(user_id=user_id, page_token=token))

        assert (list(page.entries), page.next_page_token) == ([], "")


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(10, -5), (10, 2_000_000_000), (-10, 5), (10, 1_000_000_000)],
    ids=["negative nanos", "nanos of two seconds", "signs disagree", "nanos of one second"],
)
def test_a_duration_protobuf_calls_invalid_is_duration_invalid(client, seconds, nanos):
    client.set_capacity("user-a", 10_000)
    request = client.place_hold_request("user-a", 1_000)
    request.expires_in.CopyFrom(duration_pb2.Duration(seconds=seconds, nanos=nanos))

    code, reason, fields = client.rejection(lambda: client.call("PlaceHold", request))

    assert (code, reason, fields) == (INVALID, "DURATION_INVALID", ("expires_in",))
    assert client.entry_count() == 1
    assert client.summary("user-a").open_hold_count == 0


@pytest.mark.parametrize("request_id", [" ", "   ", "\t"], ids=["one space", "spaces", "tab"])
def test_a_blank_request_id_is_invalid(client, request_id):
    client.set_capacity("user-a", 10_000)
    request = client.place_hold_request("user-a", 1_000)
    request.request_id = request_id

    code, reason, fields = client.rejection(lambda: client.call("PlaceHold", request))

    assert (code, reason, fields) == (INVALID, "ID_INVALID", ("request_id",))
    assert client.stored_request_count() == 1


# Due times: 2000-01-01T00:00:00Z is the earliest an obligation may be due.
DUE_TIME_MIN_SECONDS = 946_684_800


@pytest.mark.parametrize(
    "due_seconds", [0, 86_400 * 365, DUE_TIME_MIN_SECONDS - 1], ids=["1970", "1971", "1999"]
)
def test_an_obligation_due_before_2000_is_due_time_too_early(client, due_seconds):
    request = pb.CreateObligationRequest(
        request_id="due-1970", user_id="user-a", amount_due=client.money(1_000), purpose="fee"
    )
    request.due_time.seconds = due_seconds

    code, reason, fields = client.rejection(lambda: client.call("CreateObligation", request))

    assert (code, reason, fields) == (INVALID, "DUE_TIME_TOO_EARLY", ("due_time",))
    assert client.entry_count() == 0


def test_a_capture_whose_obligation_is_due_in_1970_is_due_time_too_early(client):
    client.set_capacity("user-a", 10_000)
    hold = client.place_hold("user-a", 1_000)
    request = client.capture_request(hold.hold_id, 500, due_in_s=0)
    request.obligation.due_time.seconds = 0

    code, reason, fields = client.rejection(lambda: client.call("CaptureHold", request))

    assert (code, reason, fields) == (INVALID, "DUE_TIME_TOO_EARLY", ("obligation.due_time",))
    assert client.get_hold(hold.hold_id).state == pb.HOLD_STATE_OPEN


def test_an_obligation_due_at_the_start_of_2000_is_created(client):
    request = pb.CreateObligationRequest(
        request_id="due-2000", user_id="user-a", amount_due=client.money(1_000), purpose="fee"
    )
    request.due_time.seconds = DUE_TIME_MIN_SECONDS

    obligation = client.call("CreateObligation", request).obligation

    assert obligation.due_time.seconds == DUE_TIME_MIN_SECONDS


# Partner data: one currency per user, for the credit line and every statement.


def partner_report(client, user_id, currency, *, months=(4,), credit_line=None):
    report = pb.PartnerReport(user_id=user_id, partner_id="bank")
    for month in months:
        report.statements.add(
            period=pb.StatementPeriod(year=2025, month=month),
            balance=client.money(5_000, currency),
            amount_paid=client.money(1_000, currency),
            repayment_status=pb.REPAYMENT_STATUS_REVOLVING,
        )
    if credit_line is not None:
        report.credit_line.CopyFrom(client.money(credit_line, currency))
    return report


def record_reports(client, *reports, request_id=None):
    request = pb.RecordPartnerStatementsRequest(
        request_id=request_id or client.new_request_id(), reports=list(reports)
    )
    return client.call("RecordPartnerStatements", request)


def test_statements_in_usd_for_a_user_whose_partner_data_is_in_cny_are_refused(client):
    client.set_capacity("user-a", 10_000)
    record_reports(client, partner_report(client, "user-a", "CNY", credit_line=50_000))
    entries = client.entry_count()
    request_id = client.new_request_id()

    def send_usd() -> None:
        record_reports(
            client,
            partner_report(client, "user-b", "CNY"),
            partner_report(client, "user-a", "USD", months=(5, 6)),
            request_id=request_id,
        )

    code, reason, _ = client.rejection(send_usd)

    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CURRENCY_MISMATCH")
    # The batch is refused whole, and the refusal is stored: a retry gets the same answer.
    assert client.entry_count() == entries
    assert client.rejection(send_usd)[:2] == (code, reason)
    history = client.call("GetCreditHistory", pb.GetCreditHistoryRequest(user_id="user-a"))
    assert {statement.balance.currency_code for statement in history.statements} == {"CNY"}


def test_a_credit_line_in_another_currency_than_the_statements_is_refused(client):
    record_reports(client, partner_report(client, "user-a", "TWD"))
    usd_line = partner_report(client, "user-a", "USD", months=(), credit_line=90_000)

    code, reason, _ = client.rejection(lambda: record_reports(client, usd_line))

    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CURRENCY_MISMATCH")
    history = client.call("GetCreditHistory", pb.GetCreditHistoryRequest(user_id="user-a"))
    assert not history.HasField("credit_line")


def test_one_report_in_two_currencies_is_invalid_and_names_the_field(client):
    report = partner_report(client, "user-a", "TWD", months=(4, 5), credit_line=50_000)
    report.statements[1].balance.currency_code = "USD"
    report.statements[1].amount_paid.currency_code = "USD"

    code, reason, fields = client.rejection(lambda: record_reports(client, report))

    assert (code, reason) == (INVALID, "CURRENCY_MISMATCH")
    assert fields == ("reports[0].statements[1].balance.currency_code",)
    assert client.entry_count() == 0


def test_partner_data_may_be_in_another_currency_than_the_account(client):
    """By design: the Taiwan data set's statements are in TWD for users whose deposits Sesame
    waives in CNY. What must not mix is the partner data itself, which the score compares."""
    client.set_capacity("user-a", 10_000)

    result = record_reports(client, partner_report(client, "user-a", "TWD", credit_line=50_000))

    assert result.results[0].statements_recorded == 1


@pytest.mark.parametrize(
    "payload", [b"\xff\xff\xff\xff", b"\x0a\x02\xff\xfe"], ids=["corrupt wire format", "not utf-8"]
)
def test_a_request_that_is_not_protobuf_is_invalid_argument_and_writes_nothing(
    client, channel, payload
):
    place_hold = channel.unary_unary("/sesame.ledger.v1.LedgerService/PlaceHold")

    code, reason, fields = client.rejection(lambda: place_hold(payload, timeout=10))

    assert (code, reason, fields) == (INVALID, "REQUEST_UNDECODABLE", ())
    assert (client.entry_count(), client.stored_request_count()) == (0, 0)
