"""The feature cache: a statement recorded in the ledger changes the next score, and a consent
withdrawn stops it."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
from sesame.ledger.v1 import ledger_service_pb2 as ledger_pb, ledger_service_pb2_grpc
from sesame.score.v1 import score_service_pb2 as pb

from services.common.grpc_errors import error_details
from services.datasets import taiwan

from .conftest import CALL_TIMEOUT_S, TAIWAN_SAMPLE, RunningLedger, ScoreServer
from .test_scores_through_grpc import get_score

# How long the entry stream may take to carry the new entry to the score service.
INVALIDATION_WAIT_S = 5.0
GOOD_PAYER = 4
# A client of the sample no other test of this module changes.
CONSENTING_CLIENT = 5


def record_late_newest_statement(ledger: RunningLedger, client_id: int) -> None:
    """The partner corrects the newest statement of a client to three months late."""
    row = next(row for row in taiwan.read_rows(TAIWAN_SAMPLE) if row.client_id == client_id)
    report = taiwan.to_partner_report(row)
    newest = max(
        report.statements, key=lambda statement: (statement.period.year, statement.period.month)
    )
    newest.repayment_status = ledger_pb.REPAYMENT_STATUS_LATE
    newest.months_late = 3
    request = ledger_pb.RecordPartnerStatementsRequest(
        request_id=f"late-correction-{client_id}", reports=[report]
    )
    stub = ledger_service_pb2_grpc.LedgerServiceStub(ledger.channel)
    response = stub.RecordPartnerStatements(request, timeout=CALL_TIMEOUT_S)
    assert response.results[0].statements_recorded == 1


def test_a_late_statement_recorded_in_the_ledger_changes_the_next_score(
    ledger: RunningLedger, score_server: ScoreServer
) -> None:
    user_id = taiwan.user_id_for(GOOD_PAYER)
    before = get_score(score_server, user_id)
    assert len(score_server.score.cache) == 1  # the history is cached now

    record_late_newest_statement(ledger, GOOD_PAYER)

    deadline = time.monotonic() + INVALIDATION_WAIT_S
    after = get_score(score_server, user_id)
    while after.score == before.score and time.monotonic() < deadline:
        time.sleep(0.02)
        after = get_score(score_server, user_id)
    assert after.score < before.score
    assert any(reason.feature.startswith("months_") for reason in after.reasons)
    # Each score names the user's latest ledger entry it reflects: the correction is newer.
    history = ledger_service_pb2_grpc.LedgerServiceStub(ledger.channel).GetCreditHistory(
        ledger_pb.GetCreditHistoryRequest(user_id=user_id), timeout=CALL_TIMEOUT_S
    )
    assert 0 < before.ledger_sequence < after.ledger_sequence == history.last_global_sequence
    # The cache's age limit is a minute, so only the entry stream can have refreshed it.
    assert score_server.score.cache.max_age_s >= 60


def test_the_cache_answers_repeated_calls_without_the_ledger(
    score_server: ScoreServer,
) -> None:
    user_id = taiwan.user_id_for(1)
    first = get_score(score_server, user_id)
    score_server.score.ledger_channel.close()  # the ledger is gone for this service

    again = get_score(score_server, user_id)

    assert again.score == first.score


def score_or_reason(server: ScoreServer, user_id: str) -> pb.Score | str:
    try:
        return get_score(server, user_id)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error
        return error_details(error).reason


def next_answer(
    server: ScoreServer, user_id: str, done: Callable[[pb.Score | str], bool]
) -> pb.Score | str:
    """The user's answer once the entry stream has carried the latest consent to the cache."""
    deadline = time.monotonic() + INVALIDATION_WAIT_S
    answer = score_or_reason(server, user_id)
    while not done(answer) and time.monotonic() < deadline:
        time.sleep(0.02)
        answer = score_or_reason(server, user_id)
    return answer


def test_a_withdrawn_consent_stops_the_cached_score_and_a_granted_one_scores_again(
    ledger: RunningLedger, score_server: ScoreServer
) -> None:
    user_id = taiwan.user_id_for(CONSENTING_CLIENT)
    scored = get_score(score_server, user_id)
    assert len(score_server.score.cache) == 1  # the score is cached now

    withdrawn = ledger.record_consent(user_id, ledger_pb.CONSENT_STATE_WITHDRAWN)
    assert withdrawn.state == ledger_pb.CONSENT_STATE_WITHDRAWN

    refused = next_answer(score_server, user_id, lambda answer: isinstance(answer, str))
    assert refused == "CONSENT_WITHDRAWN"
    # Refused as of any time, the statements' month included, and nothing is cached.
    assert score_or_reason(score_server, user_id) == "CONSENT_WITHDRAWN"
    assert len(score_server.score.cache) == 0

    ledger.record_consent(user_id, ledger_pb.CONSENT_STATE_GRANTED)

    again = next_answer(score_server, user_id, lambda answer: not isinstance(answer, str))
    assert isinstance(again, pb.Score)
    assert again.score == scored.score
