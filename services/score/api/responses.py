"""GetScore's answer to each score, built once for as long as the score is alive.

A cached score is answered many times, and its answer (up to four reasons and three actions,
each in two languages) costs more to build than to look up. The service hands out the same
`ScoreResult` object for as long as it caches it, so the answer is kept by that object's
identity and dropped when the object is: nothing here decides when a score goes stale, the
score cache alone does. Answers are never changed after they are built; gRPC only serializes
them.
"""

from __future__ import annotations

import weakref

from sesame.score.v1 import score_service_pb2 as pb

from services.score.api import mapping
from services.score.service.score_service import ScoreResult


class GetScoreResponses:
    def __init__(self) -> None:
        self._by_result: dict[int, pb.GetScoreResponse] = {}

    def for_result(self, result: ScoreResult) -> pb.GetScoreResponse:
        key = id(result)
        response = self._by_result.get(key)
        if response is None:
            response = pb.GetScoreResponse(score=mapping.score_message(result))
            self._by_result[key] = response
            # Runs as the result is freed, before its id can be given to another object.
            weakref.finalize(result, self._by_result.pop, key, None)
        return response

    def __len__(self) -> int:
        return len(self._by_result)
