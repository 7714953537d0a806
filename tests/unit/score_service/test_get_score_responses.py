"""GetScore's answers are built once per score and never outlive it."""

from __future__ import annotations

import gc
from datetime import UTC, datetime

from services.score.api import mapping
from services.score.api.responses import GetScoreResponses
from services.score.domain.reasons import Reason
from services.score.service.score_service import ScoreResult


def a_score(user_id: str, score: int) -> ScoreResult:
    reason = Reason(
        "LATE_RECENTLY",
        "months_since_late",
        0.4,
        "Your latest payment was late.",
        "您最近一次还款逾期。",
        "Pay on time.",
        "按时还款。",
    )
    return ScoreResult(
        user_id=user_id,
        score=score,
        probability_of_default=0.2,
        reasons=(reason,),
        model_version="1.2.0",
        data_as_of=datetime(2005, 9, 30, tzinfo=UTC),
        thin_file_reason=None,
    )


def test_the_answer_is_the_scores_message() -> None:
    result = a_score("u-1", 612)

    response = GetScoreResponses().for_result(result)

    assert response.score == mapping.score_message(result)


def test_a_score_asked_again_gets_the_answer_already_built() -> None:
    responses = GetScoreResponses()
    result = a_score("u-1", 612)

    assert responses.for_result(result) is responses.for_result(result)


def test_a_new_score_of_the_same_user_gets_its_own_answer() -> None:
    responses = GetScoreResponses()
    before = a_score("u-1", 612)
    responses.for_result(before)

    after = a_score("u-1", 571)

    assert responses.for_result(after).score.score == 571
    assert responses.for_result(before).score.score == 612


def test_an_answer_is_dropped_with_its_score() -> None:
    responses = GetScoreResponses()
    results = [a_score(f"u-{index}", 600 + index) for index in range(50)]
    for result in results:
        responses.for_result(result)
    assert len(responses) == 50

    del results, result
    gc.collect()

    assert len(responses) == 0
    # A score made now, perhaps where a dropped one lived, is answered with its own values.
    assert responses.for_result(a_score("u-new", 555)).score.user_id == "u-new"
