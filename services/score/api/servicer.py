"""ScoreService over gRPC (asyncio): maps messages to the service layer and back, nothing more.

The server runs on grpc.aio (`services.common.aio_server`): a GetScore answered from the cache
runs on the event loop; everything that blocks (a ledger read, a model run, a model load) runs
on the server's worker threads. Scores come from the scoring use cases (`ScoreService`), model
information and swaps from the model registry (`ModelRegistry`). Errors are raised as
`SesameError`s; the server's error interceptor turns them into statuses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from sesame.score.v1 import score_service_pb2 as pb, score_service_pb2_grpc

from services.common.runtime import GrpcServer
from services.score.api import mapping
from services.score.api.responses import GetScoreResponses
from services.score.service.model_registry import ModelRegistry
from services.score.service.score_service import ScoreService

SERVICE_NAME = "sesame.score.v1.ScoreService"

Context = grpc.aio.ServicerContext[Any, Any]


class ScoreServicer(score_service_pb2_grpc.ScoreServiceServicer):
    def __init__(self, scores: ScoreService, models: ModelRegistry) -> None:
        self._scores = scores
        self._models = models
        self._responses = GetScoreResponses()

    def add_to_server(self, server: GrpcServer) -> None:
        score_service_pb2_grpc.add_ScoreServiceServicer_to_server(self, server)

    async def GetScore(self, request: pb.GetScoreRequest, context: Context) -> pb.GetScoreResponse:
        as_of, violations = mapping.as_of_time(request)
        # A cached score is answered on the event loop; reading the ledger waits on a thread.
        result = self._scores.cached_score(request.user_id, as_of, violations)
        if result is None:
            result = await asyncio.to_thread(self._scores.get_score, request.user_id, as_of)
        return self._responses.for_result(result)

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
        return mapping.model_info_message(self._models.current(), self._models.shadow_model_version)

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
        as_of, violations = mapping.as_of_time(request)
        results = self._scores.batch_get_scores(list(request.user_ids), as_of, violations)
        return pb.BatchGetScoresResponse(
            results=[mapping.user_score_result_message(result) for result in results]
        )

    def _score_rows(
        self,
        request: pb.ScoreFeaturesRequest | pb.StreamScoreFeaturesRequest,
        scores: RepeatedCompositeFieldContainer[pb.Score],
    ) -> None:
        # The packed doubles convert to an array in one step, not value by value.
        feature_values = np.asarray(request.feature_values, dtype=np.float64)
        row_scores = self._scores.score_features(feature_values, request.include_reasons)
        mapping.add_row_scores(row_scores, scores)
