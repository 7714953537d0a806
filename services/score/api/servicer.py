"""ScoreService over gRPC (asyncio): maps messages to the service layer and back, nothing more.

The server runs on grpc.aio (`services.common.aio_server`): a GetScore answered from the cache
runs on the event loop; everything that blocks (a ledger read, a model run, a model load) runs
on the server's worker threads. Errors are raised as `SesameError`s; the server's error
interceptor turns them into statuses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import numpy as np
from google.protobuf import timestamp_pb2
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from sesame.score.v1 import score_service_pb2 as pb, score_service_pb2_grpc

from services.common.server import GrpcServer
from services.score.domain.reasons import Reason
from services.score.domain.thin_file import ThinFileReason
from services.score.service.model_registry import ModelRegistry
from services.score.service.score_service import ScoreResult, ScoreService

SERVICE_NAME = "sesame.score.v1.ScoreService"

Context = grpc.aio.ServicerContext[Any, Any]

_THIN_FILE_REASONS = {
    None: pb.THIN_FILE_REASON_UNSPECIFIED,
    ThinFileReason.NO_HISTORY: pb.THIN_FILE_REASON_NO_HISTORY,
    ThinFileReason.NO_CREDIT_LINE: pb.THIN_FILE_REASON_NO_CREDIT_LINE,
    ThinFileReason.TOO_FEW_STATEMENTS: pb.THIN_FILE_REASON_TOO_FEW_STATEMENTS,
}


class ScoreServicer(score_service_pb2_grpc.ScoreServiceServicer):
    def __init__(self, scores: ScoreService, models: ModelRegistry) -> None:
        self._scores = scores
        self._models = models

    def add_to_server(self, server: GrpcServer) -> None:
        score_service_pb2_grpc.add_ScoreServiceServicer_to_server(self, server)

    async def GetScore(self, request: pb.GetScoreRequest, context: Context) -> pb.GetScoreResponse:
        as_of = _as_of(request)
        # A cached score is answered on the event loop; reading the ledger waits on a thread.
        result = self._scores.cached_score(request.user_id, as_of)
        if result is None:
            result = await asyncio.to_thread(self._scores.get_score, request.user_id, as_of)
        return pb.GetScoreResponse(score=score_message(result))

    async def BatchGetScores(
        self, request: pb.BatchGetScoresRequest, context: Context
    ) -> pb.BatchGetScoresResponse:
        return await asyncio.to_thread(self._batch_get_scores, request)

    async def ScoreFeatures(
        self, request: pb.ScoreFeaturesRequest, context: Context
    ) -> pb.ScoreFeaturesResponse:
        response = pb.ScoreFeaturesResponse()
        await asyncio.to_thread(self._score_rows, request, response.scores)
        return response

    async def StreamScoreFeatures(
        self,
        request_iterator: AsyncIterator[pb.StreamScoreFeaturesRequest],
        context: Context,
    ) -> AsyncIterator[pb.StreamScoreFeaturesResponse]:
        async for request in request_iterator:
            response = pb.StreamScoreFeaturesResponse()
            await asyncio.to_thread(self._score_rows, request, response.scores)
            yield response

    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: Context
    ) -> pb.GetModelInfoResponse:
        model = self._models.current()
        return pb.GetModelInfoResponse(
            model_version=model.version,
            feature_names=list(model.feature_names),
            model_card_json=model.model_card_json,
            loaded_at=_timestamp(model.loaded_at),
            shadow_model_version=self._models.shadow_model_version,
        )

    async def ReloadModel(
        self, request: pb.ReloadModelRequest, context: Context
    ) -> pb.ReloadModelResponse:
        result = await asyncio.to_thread(
            self._models.reload, request.request_id, request.model_version
        )
        return pb.ReloadModelResponse(
            model_version=result.model_version,
            previous_model_version=result.previous_model_version,
        )

    def _batch_get_scores(self, request: pb.BatchGetScoresRequest) -> pb.BatchGetScoresResponse:
        results = self._scores.batch_get_scores(list(request.user_ids), _as_of(request))
        return pb.BatchGetScoresResponse(
            results=[
                pb.UserScoreResult(
                    user_id=result.user_id,
                    score=score_message(result.score) if result.score is not None else None,
                    error_reason=result.error.reason if result.error is not None else "",
                )
                for result in results
            ]
        )

    def _score_rows(
        self,
        request: pb.ScoreFeaturesRequest | pb.StreamScoreFeaturesRequest,
        scores: RepeatedCompositeFieldContainer[pb.Score],
    ) -> None:
        # The packed doubles convert to an array in one step, not value by value.
        feature_values = np.asarray(request.feature_values, dtype=np.float64)
        row_scores = self._scores.score_features(feature_values, request.include_reasons)
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
                reasons=[_reason_message(reason) for reason in reasons],
            )


def score_message(result: ScoreResult) -> pb.Score:
    message = pb.Score(
        user_id=result.user_id,
        score=result.score,
        probability_of_default=result.probability_of_default,
        reasons=[_reason_message(reason) for reason in result.reasons],
        model_version=result.model_version,
        thin_file=result.thin_file_reason is not None,
        thin_file_reason=_THIN_FILE_REASONS[result.thin_file_reason],
    )
    if result.data_as_of is not None:
        message.data_as_of.CopyFrom(_timestamp(result.data_as_of))
    return message


def _reason_message(reason: Reason) -> pb.Reason:
    return pb.Reason(
        code=reason.code,
        feature=reason.feature,
        log_odds_contribution=reason.log_odds_contribution,
        message_en=reason.message_en,
        message_zh=reason.message_zh,
        advice_en=reason.advice_en,
        advice_zh=reason.advice_zh,
    )


def _as_of(request: pb.GetScoreRequest | pb.BatchGetScoresRequest) -> datetime | None:
    return request.as_of.ToDatetime(tzinfo=UTC) if request.HasField("as_of") else None


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    timestamp = timestamp_pb2.Timestamp()
    timestamp.FromDatetime(moment.astimezone(UTC))
    return timestamp
