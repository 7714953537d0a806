"""The scores the waiver keeps: used again only while the watch on the ledger is caught up, no
newer entry of the user's credit history has arrived, the score is young enough and by the
model of the newest score; anything else asks the score service."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from services.common.deadline import Deadline
from services.common.errors import FailedPrecondition
from services.waiver.domain.decision import ScoreView
from services.waiver.service.ports import FetchedScore
from services.waiver.service.recent_scores import RecentScores
from tests.support.clock import FakeClock

from .conftest import make_score

MAX_AGE_S = 60
NO_DEADLINE = Deadline.after(None)


@dataclass
class ScoreService:
    """Answers each user's score as set, reflecting the user's ledger entries up to
    `sequence[user]`, read at the clock's time (or `read_at_us`)."""

    clock: FakeClock
    views: dict[str, ScoreView] = field(default_factory=dict)
    sequence: dict[str, int] = field(default_factory=dict)
    read_at_us: int | None = None
    refused: set[str] = field(default_factory=set)
    asked: list[str] = field(default_factory=list)

    def fetch_score(self, user_id: str, deadline: Deadline) -> FetchedScore:
        self.asked.append(user_id)
        if user_id in self.refused:
            raise FailedPrecondition("no consent", reason="CONSENT_WITHDRAWN")
        read_at_us = self.clock.now_us() if self.read_at_us is None else self.read_at_us
        return FetchedScore(
            self.views.get(user_id, make_score()), self.sequence.get(user_id, 0), read_at_us
        )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(clock: FakeClock) -> ScoreService:
    return ScoreService(clock)


def recent(service: ScoreService, clock: FakeClock, **options: object) -> RecentScores:
    scores = RecentScores(service, clock, max_age_s=MAX_AGE_S, **options)  # type: ignore[arg-type]
    scores.caught_up()
    return scores


def test_a_score_is_asked_for_once_and_then_kept(service, clock):
    service.views["u-1"] = make_score(640)
    scores = recent(service, clock)

    first = scores.get_score("u-1", NO_DEADLINE)
    again = scores.get_score("u-1", NO_DEADLINE)

    assert first.score == again.score == 640
    assert service.asked == ["u-1"]


def test_nothing_is_kept_until_the_watch_has_caught_up(service, clock):
    scores = RecentScores(service, clock, max_age_s=MAX_AGE_S)

    scores.get_score("u-1", NO_DEADLINE)
    scores.get_score("u-1", NO_DEADLINE)
    scores.caught_up()
    scores.get_score("u-1", NO_DEADLINE)
    scores.get_score("u-1", NO_DEADLINE)

    assert service.asked == ["u-1"] * 3
    assert len(scores) == 1


def test_a_watch_that_ends_drops_the_kept_scores_and_keeps_none_until_the_next_caught_up(
    service, clock
):
    scores = recent(service, clock)
    scores.get_score("u-1", NO_DEADLINE)

    scores.behind()
    scores.get_score("u-1", NO_DEADLINE)
    scores.caught_up()
    scores.get_score("u-1", NO_DEADLINE)
    scores.get_score("u-1", NO_DEADLINE)

    assert service.asked == ["u-1", "u-1", "u-1"]


class CaughtUpAgainWhileAsking(ScoreService):
    """The watch ends and a new one catches up while the score service is being asked."""

    scores: RecentScores | None = None

    def fetch_score(self, user_id: str, deadline: Deadline) -> FetchedScore:
        assert self.scores is not None
        self.scores.behind()
        self.scores.caught_up()
        return super().fetch_score(user_id, deadline)


def test_a_score_asked_for_across_the_end_of_a_watch_is_not_kept(clock):
    service = CaughtUpAgainWhileAsking(clock)
    scores = recent(service, clock)
    service.scores = scores

    scores.get_score("u-1", NO_DEADLINE)

    assert len(scores) == 0


def test_an_entry_of_the_users_history_newer_than_the_score_means_asking_again(service, clock):
    service.sequence["u-1"] = 10
    service.views["u-1"] = make_score(640)
    scores = recent(service, clock)
    scores.get_score("u-1", NO_DEADLINE)

    scores.history_changed("u-2", 11)  # another user's
    scores.get_score("u-1", NO_DEADLINE)
    service.sequence["u-1"] = 12
    service.views["u-1"] = make_score(520)  # a late payment, say
    scores.history_changed("u-1", 12)
    after = scores.get_score("u-1", NO_DEADLINE)

    assert after.score == 520
    assert service.asked == ["u-1", "u-1"]


def test_an_entry_the_score_already_reflects_leaves_it_kept(service, clock):
    service.sequence["u-1"] = 10
    scores = recent(service, clock)
    scores.get_score("u-1", NO_DEADLINE)

    scores.history_changed("u-1", 10)  # delivered again after the watch resumed
    scores.get_score("u-1", NO_DEADLINE)

    assert service.asked == ["u-1"]


def test_a_score_older_than_an_entry_already_heard_of_is_not_kept(service, clock):
    # The score service answered from a history read before the entry (its own cache had not
    # heard of it yet): the score is used for this order, but not kept for the next.
    service.sequence["u-1"] = 10
    scores = recent(service, clock)
    scores.history_changed("u-1", 12)

    scores.get_score("u-1", NO_DEADLINE)
    scores.get_score("u-1", NO_DEADLINE)
    service.sequence["u-1"] = 12
    scores.get_score("u-1", NO_DEADLINE)
    scores.get_score("u-1", NO_DEADLINE)

    assert service.asked == ["u-1"] * 3


def test_a_score_is_kept_no_longer_than_its_age_from_when_the_ledger_was_read(service, clock):
    scores = recent(service, clock)
    scores.get_score("u-1", NO_DEADLINE)

    clock.advance(seconds=MAX_AGE_S - 1)
    scores.get_score("u-1", NO_DEADLINE)
    clock.advance(seconds=2)
    scores.get_score("u-1", NO_DEADLINE)
    # The score service answers from a history read two minutes before: too old to keep.
    service.read_at_us = clock.now_us() - MAX_AGE_S * 1_000_000
    clock.advance(seconds=MAX_AGE_S + 1)
    scores.get_score("u-1", NO_DEADLINE)
    scores.get_score("u-1", NO_DEADLINE)

    assert service.asked == ["u-1"] * 4


def test_a_score_by_another_model_means_asking_again_for_every_kept_score(service, clock):
    scores = recent(service, clock)
    scores.get_score("u-1", NO_DEADLINE)
    clock.advance(seconds=MAX_AGE_S / 2)
    scores.get_score("u-2", NO_DEADLINE)

    clock.advance(seconds=MAX_AGE_S / 2 + 1)  # u-1's score is past its age, u-2's is not
    service.views["u-1"] = make_score(700, model_version="2.0.0")
    assert scores.get_score("u-1", NO_DEADLINE).model_version == "2.0.0"
    scores.get_score("u-2", NO_DEADLINE)

    assert service.asked == ["u-1", "u-2", "u-1", "u-2"]


def test_the_least_recently_used_score_leaves_first(service, clock):
    scores = recent(service, clock, max_users=2)
    for user in ("u-1", "u-2", "u-1", "u-3"):
        scores.get_score(user, NO_DEADLINE)

    scores.get_score("u-1", NO_DEADLINE)
    scores.get_score("u-2", NO_DEADLINE)

    assert service.asked == ["u-1", "u-2", "u-3", "u-2"]
    assert len(scores) == 2


def test_a_refusal_is_never_kept(service, clock):
    service.refused.add("u-1")
    scores = recent(service, clock)

    for _ in range(2):
        with pytest.raises(FailedPrecondition):
            scores.get_score("u-1", NO_DEADLINE)

    assert service.asked == ["u-1", "u-1"]


def test_an_age_of_zero_asks_every_time(service, clock):
    scores = RecentScores(service, clock, max_age_s=0)
    scores.caught_up()

    scores.get_score("u-1", NO_DEADLINE)
    scores.get_score("u-1", NO_DEADLINE)

    assert service.asked == ["u-1", "u-1"]
    assert len(scores) == 0
