"""The score service as the waiver reaches it: GetScore over gRPC, with a deadline.

A score service that cannot answer in time, or at all, becomes `ScoreUnavailable`; its own
message is never passed on.
"""

from __future__ import annotations

import grpc
from sesame.score.v1 import score_service_pb2, score_service_pb2_grpc

from services.common.deadline import Deadline
from services.waiver.domain import reasons
from services.waiver.domain.decision import ProvenAction, ScoreView, UserReason
from services.waiver.service.ports import ScoreUnavailable

SCORE_DEADLINE_S_DEFAULT = 1.0


class ScoreClient:
    def __init__(
        self, channel: grpc.Channel, *, deadline_s: float = SCORE_DEADLINE_S_DEFAULT
    ) -> None:
        self._stub = score_service_pb2_grpc.ScoreServiceStub(channel)
        self._deadline_s = deadline_s

    def get_score(self, user_id: str, deadline: Deadline) -> ScoreView:
        timeout_s = deadline.timeout_s(self._deadline_s, reason=reasons.SCORE_UNAVAILABLE)
        try:
            response = self._stub.GetScore(
                score_service_pb2.GetScoreRequest(user_id=user_id), timeout=timeout_s
            )
        except grpc.RpcError as error:
            raise ScoreUnavailable(
                "the score service could not be asked in time", reason=reasons.SCORE_UNAVAILABLE
            ) from error
        return score_view(response.score)


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
