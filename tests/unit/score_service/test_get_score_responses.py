"""GetScore's answers are built once per score, and only a bounded number of them are kept."""

from __future__ import annotations

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


def test_only_the_most_recently_asked_answers_are_kept() -> None:
    responses = GetScoreResponses(answers_kept=3)
    results = [a_score(f"u-{index}", 600 + index) for index in range(5)]
    answers = [responses.for_result(result) for result in results]

    responses.for_result(results[2])  # asked again: the most recent now

    assert len(responses) == 3
    assert responses.for_result(results[2]) is answers[2]
    assert responses.for_result(results[4]) is answers[4]
    rebuilt = responses.for_result(results[0])
    assert rebuilt is not answers[0] and rebuilt == answers[0]
