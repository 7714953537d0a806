"""The score service as the waiver reaches it: GetScore over gRPC, with a deadline (the scores
it answers are kept by `services.waiver.service.recent_scores`).

A score service that cannot answer in time, or at all, becomes `ScoreUnavailable`; its own
message is never passed on. A user without consent to be scored (the score's CONSENT_MISSING or
CONSENT_WITHDRAWN) is no unavailable score: it becomes FAILED_PRECONDITION with the waiver's
reason of the same name, which no scenario's fallback turns into an order.
"""

from __future__ import annotations

import grpc
from sesame.score.v1 import score_service_pb2, score_service_pb2_grpc

from services.common.deadline import Deadline
from services.common.errors import FailedPrecondition
from services.common.grpc_errors import error_details
from services.waiver.domain import reasons
from services.waiver.domain.decision import ProvenAction, ScoreView, UserReason
from services.waiver.service.ports import FetchedScore, ScoreUnavailable

SCORE_DEADLINE_S_DEFAULT = 1.0
# The score's reasons for a user it may not score, and the waiver's for an order it refuses.
_CONSENT_REASONS = {
    "CONSENT_MISSING": reasons.CONSENT_MISSING,
    "CONSENT_WITHDRAWN": reasons.CONSENT_WITHDRAWN,
}


class ScoreClient:
    def __init__(
        self, channel: grpc.Channel, *, deadline_s: float = SCORE_DEADLINE_S_DEFAULT
    ) -> None:
        self._stub = score_service_pb2_grpc.ScoreServiceStub(channel)
        self._deadline_s = deadline_s

    def fetch_score(self, user_id: str, deadline: Deadline) -> FetchedScore:
        timeout_s = deadline.timeout_s(self._deadline_s, reason=reasons.SCORE_UNAVAILABLE)
        try:
            response = self._stub.GetScore(
                score_service_pb2.GetScoreRequest(user_id=user_id), timeout=timeout_s
            )
        except grpc.RpcError as error:
            consent_reason = _consent_reason(error)
            if consent_reason is not None:
                raise FailedPrecondition(
                    "the user has not consented to be scored; the user grants consent on their"
                    " own channel, then the order can be created",
                    reason=consent_reason,
                ) from None
            raise ScoreUnavailable(
                "the score service could not be asked in time", reason=reasons.SCORE_UNAVAILABLE
            ) from error
        score = response.score
        return FetchedScore(
            score_view(score),
            score.ledger_sequence,
            (score.data_as_of_time.ToNanoseconds() // 1000)
            if score.HasField("data_as_of_time")
            else None,
        )


def _consent_reason(error: grpc.RpcError) -> str | None:
    if not isinstance(error, grpc.Call) or error.code() != grpc.StatusCode.FAILED_PRECONDITION:
        return None
    return _CONSENT_REASONS.get(error_details(error).reason)


def score_view(score: score_service_pb2.Score) -> ScoreView:
    reasons_given = tuple(
        UserReason(
            reason.code, reason.message_en, reason.message_zh, reason.advice_en, reason.advice_zh
        )
        for reason in score.reasons
    )
    if score.thin_file or not score.HasField("probability_of_default"):
        return ScoreView(None, None, reasons_given, score.model_version)
    actions = tuple(
        ProvenAction(action.code, action.description_en, action.description_zh)
        for action in score.actions
    )
    return ScoreView(
        score.score,
        score.probability_of_default,
        reasons_given,
        score.model_version,
        actions,
    )
