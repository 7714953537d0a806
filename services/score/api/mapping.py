"""Translation between the protobuf messages of sesame.score.v1 and the score's service layer.

Requests become plain values; what only protobuf can get wrong (a timestamp outside the range
the contract allows) is collected in a `Violations` that the service layer completes with its
own checks, so one INVALID_ARGUMENT names every bad field of a request.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from sesame.score.v1 import score_service_pb2 as pb

from services.common.grpc_errors import to_status_message
from services.common.validation import Violations
from services.score.domain import error_reasons
from services.score.domain.reasons import Reason
from services.score.domain.thin_file import ThinFileReason
from services.score.service.ports import Model
from services.score.service.score_service import RowScores, ScoreResult, UserScoreResult

# The range google.protobuf.Timestamp defines: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z,
# and nanos within one second.
TIMESTAMP_SECONDS_MIN = -62_135_596_800
TIMESTAMP_SECONDS_MAX = 253_402_300_799
NANOS_MAX = 999_999_999

_THIN_FILE_REASONS = {
    None: pb.THIN_FILE_REASON_UNSPECIFIED,
    ThinFileReason.NO_HISTORY: pb.THIN_FILE_REASON_NO_HISTORY,
    ThinFileReason.TOO_FEW_MONTHS_ON_RECORD: pb.THIN_FILE_REASON_TOO_FEW_MONTHS_ON_RECORD,
}


# ----------------------------------------------------------------------------------------------
# Requests


def as_of_time(
    request: pb.GetScoreRequest | pb.BatchGetScoresRequest,
) -> tuple[datetime | None, Violations | None]:
    """The request's as_of_time (None when unset), and the violation of one outside the range
    a Timestamp allows (None when there is nothing to say)."""
    if not request.HasField("as_of_time"):
        return None, None
    moment = request.as_of_time
    if (
        TIMESTAMP_SECONDS_MIN <= moment.seconds <= TIMESTAMP_SECONDS_MAX
        and 0 <= moment.nanos <= NANOS_MAX
    ):
        return moment.ToDatetime(tzinfo=UTC), None
    violations = Violations()
    violations.add(
        "as_of_time",
        error_reasons.TIMESTAMP_INVALID,
        "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z, "
        "with nanos from 0 to 999999999",
    )
    return None, violations


# ----------------------------------------------------------------------------------------------
# Answers


def score_message(result: ScoreResult) -> pb.Score:
    message = pb.Score(
        user_id=result.user_id,
        score=result.score,
        probability_of_default=result.probability_of_default,  # None (unset) for a thin file
        reasons=[reason_message(reason) for reason in result.reasons],
        model_version=result.model_version,
        thin_file=result.thin_file_reason is not None,
        thin_file_reason=_THIN_FILE_REASONS[result.thin_file_reason],
        sesame_obligation_count=result.sesame_obligation_count,
        partner_statement_count=result.partner_statement_count,
        actions=[
            pb.Action(
                code=action.code,
                description_en=action.description_en,
                description_zh=action.description_zh,
                score=action.score,
            )
            for action in result.actions
        ],
        ledger_sequence=result.ledger_sequence,
    )
    if result.data_as_of is not None:
        message.data_as_of_time.CopyFrom(timestamp(result.data_as_of))
    return message


def user_score_result_message(result: UserScoreResult) -> pb.UserScoreResult:
    """A user's score, or the status GetScore would have failed with for the user."""
    if result.score is not None:
        return pb.UserScoreResult(user_id=result.user_id, score=score_message(result.score))
    assert result.error is not None  # a result holds exactly one of the two
    return pb.UserScoreResult(user_id=result.user_id, error=to_status_message(result.error))


def add_row_scores(
    row_scores: RowScores, scores: RepeatedCompositeFieldContainer[pb.Score]
) -> None:
    """Appends one Score per row to `scores`, value by value (no intermediate messages)."""
    add = scores.add
    version = row_scores.model_version
    values = zip(
        row_scores.scores.tolist(), row_scores.probabilities_of_default.tolist(), strict=True
    )
    if row_scores.reasons is None:
        for score, probability in values:
            add(score=score, probability_of_default=probability, model_version=version)
        return
    for (score, probability), reasons in zip(values, row_scores.reasons, strict=True):
        add(
            score=score,
            probability_of_default=probability,
            model_version=version,
            reasons=[reason_message(reason) for reason in reasons],
        )


def model_info_message(model: Model, shadow_model_version: str) -> pb.GetModelInfoResponse:
    return pb.GetModelInfoResponse(
        model_version=model.version,
        feature_names=list(model.feature_names),
        model_card_json=model.model_card_json,
        load_time=timestamp(model.loaded_at),
        shadow_model_version=shadow_model_version,
    )


def reason_message(reason: Reason) -> pb.Reason:
    return pb.Reason(
        code=reason.code,
        feature=reason.feature,
        log_odds_contribution=reason.log_odds_contribution,
        message_en=reason.message_en,
        message_zh=reason.message_zh,
        advice_en=reason.advice_en,
        advice_zh=reason.advice_zh,
    )


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(moment.astimezone(UTC))
    return message
