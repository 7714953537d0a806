"""Scores for the waiver's unit tests: set per user, refused for a user without consent, or
unreachable."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.deadline import Deadline
from services.common.errors import FailedPrecondition
from services.waiver.domain.decision import ScoreView
from services.waiver.service.ports import ScoreUnavailable

THIN_FILE = ScoreView(None, None, (), "1.0.0")


@dataclass
class FakeScores:
    by_user: dict[str, ScoreView] = field(default_factory=dict)
    reachable: bool = True
    asked: list[str] = field(default_factory=list)
    # Users without consent to be scored, with the waiver's reason (CONSENT_MISSING or
    # CONSENT_WITHDRAWN), as the score client raises it.
    refused: dict[str, str] = field(default_factory=dict)

    def get_score(self, user_id: str, deadline: Deadline) -> ScoreView:
        self.asked.append(user_id)
        if not self.reachable:
            raise ScoreUnavailable("unreachable", reason="SCORE_UNAVAILABLE")
        if user_id in self.refused:
            raise FailedPrecondition("no consent", reason=self.refused[user_id])
        return self.by_user.get(user_id, THIN_FILE)
