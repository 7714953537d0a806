"""Every score RPC refuses what no history can mean with INVALID_ARGUMENT naming the field, and
answers anything a client can send with a score or such an error, never INTERNAL: driven with
requests Hypothesis generates, through gRPC against a real ledger."""

from __future__ import annotations

import math
import re

import grpc
import pytest
from google.protobuf import timestamp_pb2
from hypothesis import HealthCheck, given, settings, strategies as st
from sesame.score.v1 import score_service_pb2 as pb

from services.common.grpc_errors import error_details
from services.score.domain.features import FEATURE_COUNT, FEATURE_NAMES, FEATURES

from .conftest import CALL_TIMEOUT_S, RunningLedger, ScoreServer

# What a client may answer with; anything else (INTERNAL, UNKNOWN) is the service's fault.
EXPECTED_CODES = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}
# A number in a sentence: a date's year has four digits, nothing a template says has more.
LONG_NUMBER = re.compile(r"\d{5,}")
SERVER_REUSED = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def blameless_row(**values: float) -> list[float]:
    """A row of a history with no late payment, balances paid in full, with changes."""
    row = dict.fromkeys(FEATURE_NAMES, 0.0)
    row.update(
        months_since_late=6.0,
        credit_line=10_000_000.0,
        payment_ratio_latest=1.0,
        payment_ratio_previous=1.0,
        payment_ratio_overall=1.0,
        payment_ratio_lowest=1.0,
    )
    row.update(values)
    return [row[name] for name in FEATURE_NAMES]


def refused(call: grpc.UnaryUnaryMultiCallable, request: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=CALL_TIMEOUT_S)
    return raised.value


@pytest.mark.parametrize(
    "as_of",
    [
        timestamp_pb2.Timestamp(seconds=0, nanos=-1),
        timestamp_pb2.Timestamp(seconds=1_128_124_800, nanos=1_000_000_000),
        timestamp_pb2.Timestamp(seconds=253_402_300_800),  # 10000-01-01T00:00:00Z
        timestamp_pb2.Timestamp(seconds=-62_135_596_801),  # a second before year 1
    ],
    ids=["nanos -1", "nanos a whole second", "year 10000", "before year 1"],
)
def test_a_timestamp_protobuf_cannot_represent_is_refused_naming_it(
    score_server: ScoreServer, as_of: timestamp_pb2.Timestamp
) -> None:
    for call, request in (
        (score_server.stub.GetScore, pb.GetScoreRequest(user_id="tw-1", as_of_time=as_of)),
        (
            score_server.stub.BatchGetScores,
            pb.BatchGetScoresRequest(user_ids=["tw-1"], as_of_time=as_of),
        ),
    ):
        error = refused(call, request)

        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_details(error) == ("TIMESTAMP_INVALID", ("as_of_time",))


@pytest.mark.parametrize(
    ("feature", "value"),
    [
        ("months_since_late", -5.0),
        ("months_since_late", 7.0),
        ("months_late_latest", 1.5),
        ("credit_line", -100_000.0),
        ("credit_line", 0.0),
        ("payment_ratio_latest", 1.2),
        ("utilisation_latest", 1e307),
    ],
)
def test_a_feature_value_no_history_can_give_is_refused_naming_it_and_its_range(
    score_server: ScoreServer, feature: str, value: float
) -> None:
    index = FEATURE_NAMES.index(feature)
    values = blameless_row() + blameless_row(**{feature: value})
    request = pb.ScoreFeaturesRequest(feature_values=values, include_reasons=True)

    error = refused(score_server.stub.ScoreFeatures, request)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    field = f"feature_values[{FEATURE_COUNT + index}]"
    assert error_details(error) == ("FEATURE_VALUE_OUT_OF_RANGE", (field,))
    description = error.details()
    assert feature in description and FEATURES[index].range_text() in description
    assert str(value) not in description


def test_a_thin_file_has_no_probability_of_default(
    ledger: RunningLedger, score_server: ScoreServer
) -> None:
    ledger.grant_consent("nobody-we-know")
    score = score_server.stub.GetScore(
        pb.GetScoreRequest(user_id="nobody-we-know"), timeout=CALL_TIMEOUT_S
    ).score

    assert score.thin_file
    assert not score.HasField("probability_of_default")


def test_a_scored_user_has_a_probability_of_default(score_server: ScoreServer) -> None:
    as_of = timestamp_pb2.Timestamp(seconds=1_128_124_800)  # 2005-10-01T00:00:00Z
    score = score_server.stub.GetScore(
        pb.GetScoreRequest(user_id="tw-1", as_of_time=as_of), timeout=CALL_TIMEOUT_S
    ).score

    assert not score.thin_file
    assert score.HasField("probability_of_default")
    assert 0.0 < score.probability_of_default < 1.0


timestamps = st.builds(
    timestamp_pb2.Timestamp,
    seconds=st.one_of(
        st.integers(-(2**63), 2**63 - 1),
        st.integers(-62_135_596_802, 253_402_300_801),
        st.sampled_from([-62_135_596_800, 253_402_300_799, 0, 1_128_124_800]),
    ),
    nanos=st.one_of(st.integers(-(2**31), 2**31 - 1), st.integers(-2, 1_000_000_001)),
)
user_ids = st.one_of(
    st.sampled_from(["tw-1", "tw-2", "tw-7", "nobody-we-know"]),
    st.text(st.characters(blacklist_categories=("Cs",))),
)


@SERVER_REUSED
@given(user_id=user_ids, as_of=st.one_of(st.none(), timestamps))
def test_any_get_score_is_answered_or_refused_never_failed(
    score_server: ScoreServer, user_id: str, as_of: timestamp_pb2.Timestamp | None
) -> None:
    request = pb.GetScoreRequest(user_id=user_id, as_of_time=as_of)
    try:
        score = score_server.stub.GetScore(request, timeout=CALL_TIMEOUT_S).score
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
            # A valid id of a user who never consented (the replayed users did).
            assert error_details(error) == ("CONSENT_MISSING", ())
            return
        assert error.code() in EXPECTED_CODES, error
        assert error_details(error).field_names
        return
    for reason in score.reasons:
        assert not LONG_NUMBER.search(reason.message_en + reason.message_zh)


feature_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-10.0, 10.0),
    st.sampled_from([0.0, 1.0, 6.0, -1.0, 1e307, -1e307, 1e15, 1e16, math.nan]),
)


@SERVER_REUSED
@given(
    rows=st.lists(
        st.lists(feature_values, min_size=FEATURE_COUNT, max_size=FEATURE_COUNT),
        min_size=1,
        max_size=3,
    ),
    mixed_with_blameless=st.booleans(),
    include_reasons=st.booleans(),
)
def test_any_feature_rows_are_scored_or_refused_never_failed(
    score_server: ScoreServer,
    rows: list[list[float]],
    mixed_with_blameless: bool,
    include_reasons: bool,
) -> None:
    if mixed_with_blameless:
        # Most of each row valid, so the range checks meet values next to valid ones.
        rows = [
            [
                value if index % 3 == 0 else blameless
                for index, (value, blameless) in enumerate(zip(row, blameless_row(), strict=True))
            ]
            for row in rows
        ]
    values = [value for row in rows for value in row]
    request = pb.ScoreFeaturesRequest(feature_values=values, include_reasons=include_reasons)
    try:
        scores = score_server.stub.ScoreFeatures(request, timeout=CALL_TIMEOUT_S).scores
    except grpc.RpcError as error:
        assert error.code() in EXPECTED_CODES, error
        assert error_details(error).field_names
        return
    assert len(scores) == len(rows)
    for row, score in zip(rows, scores, strict=True):
        assert all(feature.holds(value) for feature, value in zip(FEATURES, row, strict=True)), (
            "a row with a value outside its feature's range was scored"
        )
        assert 350 <= score.score <= 950
        for reason in score.reasons:
            assert not LONG_NUMBER.search(reason.message_en + reason.message_zh)


@pytest.mark.parametrize("value", [1e306, 123_456.0, 1e15 - 1])
def test_a_share_of_the_line_however_large_is_said_in_three_digits(
    score_server: ScoreServer, value: float
) -> None:
    row = blameless_row(utilisation_latest=value, utilisation_mean=0.9, utilisation_max=value)
    row = [min(max(v, f.low), f.high) for v, f in zip(row, FEATURES, strict=True)]
    request = pb.ScoreFeaturesRequest(feature_values=row, include_reasons=True)

    (score,) = score_server.stub.ScoreFeatures(request, timeout=CALL_TIMEOUT_S).scores

    for reason in score.reasons:
        assert not LONG_NUMBER.search(reason.message_en + reason.message_zh)
