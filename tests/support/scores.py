"""Scores for the waiver's unit tests: set per user, or unreachable."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.deadline import Deadline
from services.waiver.domain.decision import ScoreView
from services.waiver.service.ports import ScoreUnavailable

THIN_FILE = ScoreView(None, None, (), "1.0.0")


@dataclass
class FakeScores:
    by_user: dict[str, ScoreView] = field(default_factory=dict)
    reachable: bool = True
    asked: list[str] = field(default_factory=list)

    def get_score(self, user_id: str, deadline: Deadline) -> ScoreView:
        self.asked.append(user_id)
        if not self.reachable:
            raise ScoreUnavailable("unreachable", reason="SCORE_UNAVAILABLE")
        return self.by_user.get(user_id, THIN_FILE)
