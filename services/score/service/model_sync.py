"""Keeps every worker process on the model version swapped to last.

ReloadModel reaches one worker (the one its connection landed on). That worker swaps and
publishes the version (`ModelChoice`); a thread in every worker polls the choice and swaps to a
newly published version the same way, warm-up included. For up to one poll interval after a
swap, workers may answer with different versions; every answer names the version that made it.
"""

from __future__ import annotations

from collections.abc import Callable

from services.common.periodic import PeriodicTask
from services.score.service.ports import ModelChoice

POLL_INTERVAL_S = 0.25


class ModelFollower:
    """Calls `follow(version)` for every version published after it starts, in a daemon thread."""

    def __init__(
        self,
        choice: ModelChoice,
        follow: Callable[[str], None],
        *,
        poll_interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self._choice = choice
        self._follow = follow
        # Generation 0 is "nothing published": a worker starting then serves the newest model.
        self._seen_generation = 0
        self._task = PeriodicTask("model-follower", poll_interval_s, self._follow_if_published)

    def start(self) -> None:
        self._task.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._task.stop(timeout_s)

    def _follow_if_published(self) -> None:
        generation, model_version = self._choice.read()
        if generation != self._seen_generation:
            self._seen_generation = generation
            self._follow(model_version)
