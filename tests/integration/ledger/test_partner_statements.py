"""Partner-reported credit lines and statements, and the credit history read back."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from google.protobuf import timestamp_pb2
from sesame.ledger.v1 import ledger_service_pb2 as pb
from sesame.type.v1 import money_pb2

TWD = "TWD"


def statement(year, month, balance, paid, status=pb.REPAYMENT_STATUS_REVOLVING, months_late=0):
    return pb.Statement(
        period=pb.StatementPeriod(year=year, month=month),
        balance=money_pb2.Money(currency_code=TWD, amount_minor=balance),
        amount_paid=money_pb2.Money(currency_code=TWD, amount_minor=paid),
        repayment_status=status,
        months_late=months_late,
    )


def report(client, user_id, statements, credit_line=20_000_000):
    message = pb.PartnerReport(
        user_id=user_id, partner_id="taiwan-bank-2005", statements=statements
    )
    if credit_line is not None:
        message.credit_line.CopyFrom(client.money(credit_line, TWD))
    return message


def record(client, reports, request_id=None):
    request = pb.RecordPartnerStatementsRequest(
        request_id=request_id or client.new_request_id(), reports=reports
    )
    return client.call("RecordPartnerStatements", request)


def as_of(year, month, day=1):
    return timestamp_pb2.Timestamp(seconds=int(datetime(year, month, day, tzinfo=UTC).timestamp()))


def history(client, user_id, at, max_statements=0):
    request = pb.GetCreditHistoryRequest(user_id=user_id, max_statements=max_statements)
    request.as_of_time.CopyFrom(at)
    return client.call("GetCreditHistory", request)


SIX_MONTHS = [
    statement(2005, 4, 3_913_00, 0, pb.REPAYMENT_STATUS_NO_USE),
    statement(2005, 5, 3_102_00, 689_00, pb.REPAYMENT_STATUS_PAID_IN_FULL),
    statement(2005, 6, 689_00, 0),
    statement(2005, 7, -10_00, 0),
    statement(2005, 8, 0, 0, pb.REPAYMENT_STATUS_LATE, months_late=2),
    statement(2005, 9, 0, 0, pb.REPAYMENT_STATUS_LATE, months_late=2),
]


def test_a_batch_records_credit_lines_and_statements_for_many_users(client):
    response = record(client, [report(client, "user-a", SIX_MONTHS), report(client, "user-b", [])])

    assert [result.user_id for result in response.results] == ["user-a", "user-b"]
    assert response.results[0].statements_recorded == 6
    assert response.results[0].credit_line_recorded
    assert response.results[1].statements_recorded == 0
    assert client.entry_count() == 8  # 2 credit lines, 6 statements
    assert client.verify().intact


def test_an_identical_report_changes_nothing(client):
    record(client, [report(client, "user-a", SIX_MONTHS)])
    entries = client.entry_count()

    again = record(client, [report(client, "user-a", SIX_MONTHS)]).results[0]

    assert (again.statements_recorded, again.statements_unchanged) == (0, 6)
    assert not again.credit_line_recorded
    assert client.entry_count() == entries


def test_a_different_statement_for_a_period_is_a_correction(client):
    record(client, [report(client, "user-a", SIX_MONTHS)])
    corrected = list(SIX_MONTHS)
    corrected[2] = statement(2005, 6, 700_00, 700_00, pb.REPAYMENT_STATUS_PAID_IN_FULL)

    result = record(client, [report(client, "user-a", corrected)]).results[0]

    assert (result.statements_recorded, result.statements_unchanged) == (1, 5)
    june = [s for s in history(client, "user-a", as_of(2005, 10)).statements if s.period.month == 6]
    assert june == [corrected[2]]
    assert client.entry_count() == 8
    assert client.verify().intact


def test_a_changed_credit_line_is_recorded_and_an_absent_one_keeps_the_old(client):
    record(client, [report(client, "user-a", [], credit_line=1_000)])

    changed = record(client, [report(client, "user-a", [], credit_line=2_000)]).results[0]
    absent = record(client, [report(client, "user-a", [], credit_line=None)]).results[0]

    assert changed.credit_line_recorded
    assert not absent.credit_line_recorded
    assert history(client, "user-a", as_of(2030, 1)).credit_line.amount_minor == 2_000


def test_the_credit_history_counts_months_ended_by_as_of_newest_first(client):
    record(client, [report(client, "user-a", SIX_MONTHS)])

    by_october = history(client, "user-a", as_of(2005, 10))
    by_mid_september = history(client, "user-a", as_of(2005, 9, 15))
    latest_three = history(client, "user-a", as_of(2005, 10), max_statements=3)

    assert [s.period.month for s in by_october.statements] == [9, 8, 7, 6, 5, 4]
    assert by_october.statements[0] == SIX_MONTHS[5]
    assert [s.period.month for s in by_mid_september.statements] == [8, 7, 6, 5, 4]
    assert [s.period.month for s in latest_three.statements] == [9, 8, 7]
    assert by_october.credit_line.amount_minor == 20_000_000
    assert by_october.as_of_time == as_of(2005, 10)
    assert by_october.last_user_sequence == 7
    assert by_october.last_global_sequence == 7


def test_the_credit_history_shows_obligations_as_they_stood(client):
    obligation = client.create_obligation("user-a", 1_000)
    client.clock.advance(seconds=3600)
    client.pay(obligation.obligation_id, 1_000)
    before_closing = client.timestamp_in(0)
    client.clock.advance(seconds=3600)
    client.close_obligation(obligation.obligation_id, pb.OBLIGATION_OUTCOME_ON_TIME)
    later = client.create_obligation("user-a", 2_000)

    then = history(client, "user-a", before_closing)
    now = client.call("GetCreditHistory", pb.GetCreditHistoryRequest(user_id="user-a"))

    assert [o.obligation_id for o in then.obligations] == [obligation.obligation_id]
    assert then.obligations[0].state == pb.OBLIGATION_STATE_OPEN
    assert then.obligations[0].outcome == pb.OBLIGATION_OUTCOME_UNSPECIFIED
    assert [o.obligation_id for o in now.obligations] == [
        later.obligation_id,
        obligation.obligation_id,
    ]
    assert now.obligations[1].outcome == pb.OBLIGATION_OUTCOME_ON_TIME
    assert not now.HasField("credit_line")


def test_an_unknown_user_has_an_empty_history(client):
    empty = client.call("GetCreditHistory", pb.GetCreditHistoryRequest(user_id="nobody"))

    assert not empty.HasField("credit_line")
    assert list(empty.statements) == []
    assert (empty.last_user_sequence, empty.last_global_sequence) == (0, 0)


def test_a_batch_with_one_invalid_report_writes_nothing(client):
    bad = report(client, "user-b", [statement(2005, 13, 0, 0)])

    code, reason, fields = client.rejection(
        lambda: record(client, [report(client, "user-a", SIX_MONTHS), bad])
    )

    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "PERIOD_INVALID")
    assert fields == ("reports[1].statements[0].period.month",)
    assert client.entry_count() == 0
    assert client.stored_request_count() == 0


def test_late_without_months_late_is_invalid(client):
    late = report(client, "user-a", [statement(2005, 4, 0, 0, pb.REPAYMENT_STATUS_LATE)])

    code, reason, fields = client.rejection(lambda: record(client, [late]))

    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MONTHS_LATE_INVALID")
    assert fields == ("reports[0].statements[0].months_late",)
    assert client.entry_count() == 0


def test_a_user_twice_in_a_batch_or_a_period_twice_in_a_report_is_invalid(client):
    twice = [report(client, "user-a", []), report(client, "user-a", [])]
    code, reason, fields = client.rejection(lambda: record(client, twice))
    assert (code, reason, fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "DUPLICATE_USER",
        ("reports[1].user_id",),
    )

    same_month = report(client, "user-a", [statement(2005, 4, 0, 0), statement(2005, 4, 1, 0)])
    code, reason, fields = client.rejection(lambda: record(client, [same_month]))
    assert (code, reason, fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "DUPLICATE_PERIOD",
        ("reports[0].statements[1].period",),
    )


def test_a_batch_of_a_thousand_reports_is_accepted_and_more_is_refused(client):
    reports = [report(client, f"user-{index:04d}", SIX_MONTHS[:1]) for index in range(1000)]

    response = record(client, reports)

    assert len(response.results) == 1000
    assert client.entry_count() == 2000
    too_many = [*reports, report(client, "user-1000", [])]
    code, reason, fields = client.rejection(lambda: record(client, too_many))
    assert (code, reason, fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "BATCH_SIZE_INVALID",
        ("reports",),
    )
