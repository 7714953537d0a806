"""GetScore, BatchGetScores, ScoreFeatures and GetModelInfo against a real ledger."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sesame.score.v1 import score_service_pb2 as pb

from services.common.grpc_errors import error_details, status_details
from services.datasets import taiwan
from services.score.adapters.model_files import MODELS_ROOT, onnx_session, run_model
from services.score.domain.features import FEATURE_COUNT, FEATURE_NAMES
from services.score.domain.scoring import score_from_log_odds
from services.score.training import dataset
from tests.support.feature_rows import valid_row, valid_rows

from .conftest import (
    CALL_TIMEOUT_S,
    SERVING_MODEL_VERSION,
    TAIWAN_SAMPLE,
    RunningLedger,
    ScoreServer,
    ScoreServerFactory,
)

SCORE_SERVICE = "sesame.score.v1.ScoreService"


def statements_as_of() -> timestamp_pb2.Timestamp:
    timestamp = timestamp_pb2.Timestamp()
    timestamp.FromDatetime(taiwan.STATEMENTS_AS_OF)
    return timestamp


def get_score(server: ScoreServer, user_id: str) -> pb.Score:
    request = pb.GetScoreRequest(user_id=user_id, as_of_time=statements_as_of())
    return server.stub.GetScore(request, timeout=CALL_TIMEOUT_S).score


def test_a_score_through_grpc_equals_the_offline_pipeline(score_server: ScoreServer) -> None:
    offline = dataset.load_labelled_features(TAIWAN_SAMPLE)
    session = onnx_session(MODELS_ROOT / SERVING_MODEL_VERSION / "model.onnx")
    expected = run_model(session, offline.features)

    for index, client_id in enumerate(offline.client_ids):
        score = get_score(score_server, taiwan.user_id_for(int(client_id)))

        assert not score.thin_file
        assert score.probability_of_default == pytest.approx(
            expected.probability_of_default[index], abs=1e-12
        )
        assert score.score == score_from_log_odds(float(expected.log_odds_of_default[index]))
        assert len(score.reasons) <= 4
        assert score.model_version == SERVING_MODEL_VERSION
        assert score.data_as_of_time.ToDatetime().year == 2005


def test_an_unknown_user_who_consented_gets_a_thin_file_not_a_guess(
    ledger: RunningLedger, score_server: ScoreServer
) -> None:
    ledger.grant_consent("nobody-we-know")
    score = get_score(score_server, "nobody-we-know")

    assert score.thin_file
    assert score.thin_file_reason == pb.THIN_FILE_REASON_NO_HISTORY
    assert score.score == 0
    assert list(score.reasons) == []


@pytest.mark.parametrize("user_id", ["", "x" * 129, "tab\there"])
def test_a_bad_user_id_is_refused_naming_the_field(score_server: ScoreServer, user_id: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        score_server.stub.GetScore(pb.GetScoreRequest(user_id=user_id), timeout=CALL_TIMEOUT_S)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(raised.value).field_names == ("user_id",)
    assert error_details(raised.value).reason == ("FIELD_REQUIRED" if not user_id else "ID_INVALID")


def test_a_request_with_two_bad_fields_names_both(score_server: ScoreServer) -> None:
    out_of_range = timestamp_pb2.Timestamp(seconds=253_402_300_800)  # 10000-01-01T00:00:00Z
    request = pb.GetScoreRequest(user_id="", as_of_time=out_of_range)

    with pytest.raises(grpc.RpcError) as raised:
        score_server.stub.GetScore(request, timeout=CALL_TIMEOUT_S)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(error_details(raised.value).field_names) == {"user_id", "as_of_time"}


def test_a_batch_of_more_than_1000_users_is_refused(score_server: ScoreServer) -> None:
    request = pb.BatchGetScoresRequest(user_ids=[f"user-{index}" for index in range(1001)])

    with pytest.raises(grpc.RpcError) as raised:
        score_server.stub.BatchGetScores(request, timeout=CALL_TIMEOUT_S)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(raised.value) == ("TOO_MANY_USERS", ("user_ids",))


def test_a_user_who_never_consented_is_refused_whatever_the_as_of(
    score_server: ScoreServer,
) -> None:
    for request in (
        pb.GetScoreRequest(user_id="never-asked"),
        pb.GetScoreRequest(user_id="never-asked", as_of_time=statements_as_of()),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            score_server.stub.GetScore(request, timeout=CALL_TIMEOUT_S)
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_details(raised.value) == ("CONSENT_MISSING", ())


def test_a_batch_answers_every_user_in_order(
    ledger: RunningLedger, score_server: ScoreServer
) -> None:
    ledger.grant_consent("nobody-we-know")
    user_ids = ["tw-1", "", "nobody-we-know", "tw-4", "never-asked"]
    request = pb.BatchGetScoresRequest(user_ids=user_ids, as_of_time=statements_as_of())

    results = score_server.stub.BatchGetScores(request, timeout=CALL_TIMEOUT_S).results

    assert [result.user_id for result in results] == user_ids
    assert [result.WhichOneof("result") for result in results] == [
        "score",
        "error",
        "score",
        "score",
        "error",
    ]
    assert results[0].score.score == get_score(score_server, "tw-1").score
    assert results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert status_details(results[1].error) == ("FIELD_REQUIRED", ("user_ids[1]",))
    assert results[2].score.thin_file_reason == pb.THIN_FILE_REASON_NO_HISTORY
    assert (
        results[3].score.probability_of_default
        == get_score(score_server, "tw-4").probability_of_default
    )
    assert results[4].error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert status_details(results[4].error) == ("CONSENT_MISSING", ())


def test_score_features_matches_get_score_for_the_same_features(
    score_server: ScoreServer,
) -> None:
    offline = dataset.load_labelled_features(TAIWAN_SAMPLE)
    feature_values = offline.features.ravel().tolist()
    with_reasons = score_server.stub.ScoreFeatures(
        pb.ScoreFeaturesRequest(feature_values=feature_values, include_reasons=True),
        timeout=CALL_TIMEOUT_S,
    ).scores
    without_reasons = score_server.stub.ScoreFeatures(
        pb.ScoreFeaturesRequest(feature_values=feature_values), timeout=CALL_TIMEOUT_S
    ).scores

    for client_id, score, bare in zip(
        offline.client_ids, with_reasons, without_reasons, strict=True
    ):
        by_user = get_score(score_server, taiwan.user_id_for(int(client_id)))
        assert score.score == bare.score == by_user.score
        assert score.probability_of_default == bare.probability_of_default
        # onnxruntime's Sigmoid can round a row of a batch one unit in the last place away from
        # the same row alone, so a batch and a single user agree to float64 precision only.
        assert score.probability_of_default == pytest.approx(
            by_user.probability_of_default, rel=1e-14
        )
        assert [reason.code for reason in score.reasons] == [
            reason.code for reason in by_user.reasons
        ]
        assert bare.reasons == []


def test_values_that_are_no_whole_number_of_rows_are_refused_naming_the_field(
    score_server: ScoreServer,
) -> None:
    request = pb.ScoreFeaturesRequest(feature_values=[0.0] * FEATURE_COUNT + [1.0, 2.0])

    with pytest.raises(grpc.RpcError) as raised:
        score_server.stub.ScoreFeatures(request, timeout=CALL_TIMEOUT_S)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(raised.value) == ("FEATURE_VALUES_NOT_WHOLE_ROWS", ("feature_values",))


def test_streamed_batches_are_answered_batch_by_batch(score_server: ScoreServer) -> None:
    rng = np.random.default_rng(7)
    batches = [
        pb.StreamScoreFeaturesRequest(feature_values=valid_rows(rng, size).reshape(-1).tolist())
        for size in (1, 5000, 3)
    ]

    answers = list(score_server.stub.StreamScoreFeatures(iter(batches), timeout=CALL_TIMEOUT_S))

    assert [len(answer.scores) for answer in answers] == [1, 5000, 3]
    assert all(score.reasons == [] for score in answers[1].scores)


def test_a_bad_batch_in_a_stream_ends_it_naming_the_field(score_server: ScoreServer) -> None:
    batches = [
        pb.StreamScoreFeaturesRequest(feature_values=valid_row()),
        pb.StreamScoreFeaturesRequest(feature_values=[*valid_row(), 0.5]),
    ]
    answers: list[pb.StreamScoreFeaturesResponse] = []

    with pytest.raises(grpc.RpcError) as raised:
        answers.extend(score_server.stub.StreamScoreFeatures(iter(batches), timeout=CALL_TIMEOUT_S))

    assert [len(answer.scores) for answer in answers] == [1]
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(raised.value).field_names == ("feature_values",)


def test_model_info_describes_the_serving_model(score_server: ScoreServer) -> None:
    info = score_server.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=CALL_TIMEOUT_S)

    assert info.model_version == SERVING_MODEL_VERSION
    assert tuple(info.feature_names) == FEATURE_NAMES
    assert '"contract"' in info.model_card_json
    assert info.load_time.seconds > 0


def test_the_service_is_not_serving_until_its_model_is_warm(
    start_score_server: ScoreServerFactory,
) -> None:
    server = start_score_server(warm=False)
    health = health_pb2_grpc.HealthStub(server.channel)

    def status() -> int:
        request = health_pb2.HealthCheckRequest(service=SCORE_SERVICE)
        return int(health.Check(request, timeout=CALL_TIMEOUT_S).status)  # type: ignore[attr-defined]

    assert status() == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(grpc.RpcError) as raised:
        get_score(server, "tw-1")
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE

    server.start_serving()

    assert status() == health_pb2.HealthCheckResponse.SERVING


def test_a_ledger_that_is_down_makes_scores_unavailable(
    start_score_server: ScoreServerFactory,
) -> None:
    # Nothing listens on port 1 of the loopback address.
    server = start_score_server(ledger_address="127.0.0.1:1")

    with pytest.raises(grpc.RpcError) as raised:
        get_score(server, "tw-1")

    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_details(raised.value).reason == "LEDGER_UNAVAILABLE"


def test_a_batch_reports_a_ledger_that_is_down_for_each_user(
    start_score_server: ScoreServerFactory,
) -> None:
    server = start_score_server(ledger_address="127.0.0.1:1")
    request = pb.BatchGetScoresRequest(user_ids=["tw-1", "tw-2"], as_of_time=statements_as_of())

    results = server.stub.BatchGetScores(request, timeout=CALL_TIMEOUT_S).results

    assert [result.error.code for result in results] == [grpc.StatusCode.UNAVAILABLE.value[0]] * 2
    assert [status_details(result.error) for result in results] == [("LEDGER_UNAVAILABLE", ())] * 2
