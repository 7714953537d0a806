"""The Taiwan data set's scale: 24,000 users, each a credit line and six statements."""

from __future__ import annotations

import pytest
from sesame.ledger.v1 import ledger_service_pb2 as pb
from sesame.type.v1 import money_pb2

USERS = 24_000
REPORTS_PER_BATCH = 1_000
ENTRIES_PER_USER = 7
# Generous: this suite runs on shared CI machines; no assertion here is about speed.
CALL_TIMEOUT_S = 600.0


def twd(amount_minor: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="TWD", amount_minor=amount_minor)


def batch(first_user: int) -> pb.RecordPartnerStatementsRequest:
    reports = [
        pb.PartnerReport(
            user_id=f"taiwan-{user}",
            partner_id="taiwan-bank-2005",
            credit_line=twd(20_000_00 + user),
            statements=[
                pb.Statement(
                    period=pb.StatementPeriod(year=2005, month=month),
                    balance=twd(user * month - 50_000),
                    amount_paid=twd(user % 997),
                    repayment_status=pb.REPAYMENT_STATUS_REVOLVING,
                )
                for month in range(4, 10)
            ],
        )
        for user in range(first_user, first_user + REPORTS_PER_BATCH)
    ]
    return pb.RecordPartnerStatementsRequest(request_id=f"batch-{first_user}", reports=reports)


@pytest.mark.slow
def test_twenty_four_thousand_users_are_recorded_replayed_and_verified(client):
    requests = [batch(first_user) for first_user in range(0, USERS, REPORTS_PER_BATCH)]

    for request in requests:
        results = client.call("RecordPartnerStatements", request, CALL_TIMEOUT_S).results
        assert [result.statements_recorded for result in results] == [6] * REPORTS_PER_BATCH
    replayed = client.call("RecordPartnerStatements", requests[0], CALL_TIMEOUT_S).results

    assert client.entry_count() == USERS * ENTRIES_PER_USER
    assert all(result.statements_recorded == 6 for result in replayed)
    report = client.verify(timeout_s=CALL_TIMEOUT_S)
    assert report.intact
    assert (report.users_checked, report.entries_checked) == (USERS, USERS * ENTRIES_PER_USER)
