"""A shadow model: scored alongside the serving model, measured, never served.

Every user score the serving model computes (not the cached repeats, which would count a user
twice) is offered to the shadow with the features it was computed from. The shadow scores them
in a background thread, in batches, and reports each pair to a `ShadowRecorder` (Prometheus in
production: how far apart the two scores are and how often they fall on different sides of a
decision threshold). The queue is bounded and offering never waits, so a slow shadow cannot
slow the calls it follows: what it cannot keep up with is dropped and counted.
"""

from __future__ import annotations

import queue
import threading
from typing import Protocol

import numpy as np
import structlog

from services.score.domain.scoring import score_from_log_odds
from services.score.service.ports import Model

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

QUEUE_SIZE_DEFAULT = 10_000
BATCH_ROWS_MAX = 512
_STOP = None


class ShadowRecorder(Protocol):
    """Where the comparisons go."""

    def compared(self, served_score: int, shadow_score: int) -> None: ...

    def dropped(self) -> None: ...


class ShadowScorer:
    """Scores offered feature rows with the shadow model in a daemon thread until `stop`."""

    def __init__(
        self,
        model: Model,
        recorder: ShadowRecorder,
        *,
        queue_size: int = QUEUE_SIZE_DEFAULT,
    ) -> None:
        self.model = model
        self._recorder = recorder
        self._queue: queue.Queue[tuple[tuple[float, ...], int] | None] = queue.Queue(queue_size)
        self._thread = threading.Thread(target=self._run, name="shadow-model", daemon=True)
        self._thread.start()

    @property
    def version(self) -> str:
        return self.model.version

    def offer(self, features: tuple[float, ...], served_score: int) -> None:
        """Queues a comparison, or counts it as dropped when the shadow is behind."""
        try:
            self._queue.put_nowait((features, served_score))
        except queue.Full:
            self._recorder.dropped()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < BATCH_ROWS_MAX:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            offered = [item for item in batch if item is not _STOP]
            try:
                if offered:
                    self._compare(offered)
            except Exception:  # a failing shadow must never affect serving
                log.exception("shadow_model_failed", model_version=self.version)
            finally:
                for _ in batch:
                    self._queue.task_done()
            if len(offered) < len(batch):
                return

    def _compare(self, offered: list[tuple[tuple[float, ...], int]]) -> None:
        rows = np.asarray([features for features, _ in offered], dtype=np.float64)
        log_odds = self.model.score_rows(rows).log_odds_of_default
        for (_, served_score), shadow_log_odds in zip(offered, log_odds.tolist(), strict=True):
            self._recorder.compared(served_score, score_from_log_odds(shadow_log_odds))
