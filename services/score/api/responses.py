"""GetScore's answers to the scores asked for most recently, each built once.

A cached score is answered many times, and building its answer (up to four reasons and three
actions, each in two languages) costs more than looking it up; keeping answers costs memory, so
only the answers to the most recently asked scores are kept, a bounded number of them (the
README gives what one costs to build and to keep). They are kept by the identity of the
`ScoreResult` they answer: the service hands out the same object for as long as it caches the
score, and a score that changes is a new object. Nothing here decides when a score goes stale;
the score cache alone does. Answers are never changed after they are built; gRPC only
serializes them.

Used from the event loop's thread alone, like the GetScore handler that calls it.
"""

from __future__ import annotations

from collections import OrderedDict

from sesame.score.v1 import score_service_pb2 as pb

from services.score.api import mapping
from services.score.service.score_service import ScoreResult

# Enough for a busy hot set of users; a small share of a process's memory.
ANSWERS_KEPT = 4096


class GetScoreResponses:
    def __init__(self, answers_kept: int = ANSWERS_KEPT) -> None:
        self._answers_kept = answers_kept
        # Keyed by id(result); the result is held too, so its id names no other object meanwhile.
        self._answers: OrderedDict[int, tuple[ScoreResult, pb.GetScoreResponse]] = OrderedDict()

    def for_result(self, result: ScoreResult) -> pb.GetScoreResponse:
        key = id(result)
        kept = self._answers.get(key)
        if kept is not None:
            self._answers.move_to_end(key)
            return kept[1]
        response = pb.GetScoreResponse(score=mapping.score_message(result))
        self._answers[key] = (result, response)
        if len(self._answers) > self._answers_kept:
            self._answers.popitem(last=False)
        return response

    def __len__(self) -> int:
        return len(self._answers)
