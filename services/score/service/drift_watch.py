"""Drift: the population stability of what the score service scores, against the training rows.

Every user score the serving model computes (not the cached repeats, which would count a user
twice) is observed with its feature row. The watch keeps the last `window_rows` of them and,
every `publish_every` observations, computes the population stability index (PSI) of each
feature and of the score against the serving model's training distribution (the model card's
`drift_reference`, see `population_stability`) and hands them to a `DriftRecorder`
(Prometheus gauges in production, `sesame_score_feature_psi` and `sesame_score_psi`). A model
swap starts a new window against the new model's reference. A model without a drift reference
is not watched.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from services.score.domain.features import FEATURE_COUNT, FEATURE_NAMES
from services.score.service import population_stability as drift
from services.score.service.ports import Model

WINDOW_ROWS_DEFAULT = 5_000
PUBLISH_EVERY_DEFAULT = 250


class DriftRecorder(Protocol):
    """Where the indices go."""

    def record(
        self, feature_indices: Mapping[str, float], score_index: float, rows: int
    ) -> None: ...


@dataclass(frozen=True)
class DriftReference:
    """A model's training distribution: bins and shares per feature, and the score's."""

    feature_edges: tuple[tuple[float, ...], ...]
    feature_shares: tuple[tuple[float, ...], ...]
    score_edges: tuple[float, ...]
    score_shares: tuple[float, ...]

    @staticmethod
    def of_model_card(model_card_json: str) -> DriftReference | None:
        reference = json.loads(model_card_json).get("drift_reference")
        if reference is None or set(reference["features"]) != set(FEATURE_NAMES):
            return None
        features = [reference["features"][name] for name in FEATURE_NAMES]
        return DriftReference(
            feature_edges=tuple(tuple(feature["edges"]) for feature in features),
            feature_shares=tuple(tuple(feature["shares"]) for feature in features),
            score_edges=tuple(reference["score"]["edges"]),
            score_shares=tuple(reference["score"]["shares"]),
        )


def stability_indices(
    reference: DriftReference, rows: NDArray[np.float64], scores: NDArray[np.float64]
) -> tuple[dict[str, float], float]:
    """The PSI of each feature's column and of the scores against the reference."""
    by_feature = {
        name: drift.population_stability_index(drift.bin_shares(rows[:, index], edges), shares)
        for index, (name, edges, shares) in enumerate(
            zip(FEATURE_NAMES, reference.feature_edges, reference.feature_shares, strict=True)
        )
    }
    score_index = drift.population_stability_index(
        drift.bin_shares(scores, reference.score_edges), reference.score_shares
    )
    return by_feature, score_index


class DriftWatch:
    """A rolling window of scored rows and their drift from the serving model's training rows."""

    def __init__(
        self,
        recorder: DriftRecorder,
        *,
        window_rows: int = WINDOW_ROWS_DEFAULT,
        publish_every: int = PUBLISH_EVERY_DEFAULT,
    ) -> None:
        self._recorder = recorder
        self._window_rows = window_rows
        self._publish_every = publish_every
        self._lock = threading.Lock()
        self._model_loaded_at: object = None
        self._reference: DriftReference | None = None
        self._rows = np.zeros((window_rows, FEATURE_COUNT))
        self._scores = np.zeros(window_rows)
        self._seen = 0

    def observe(self, model: Model, features: Sequence[float], score: int) -> None:
        with self._lock:
            if model.loaded_at != self._model_loaded_at:
                self._model_loaded_at = model.loaded_at
                self._reference = DriftReference.of_model_card(model.model_card_json)
                self._seen = 0
            if self._reference is None:
                return
            slot = self._seen % self._window_rows
            self._rows[slot] = features
            self._scores[slot] = score
            self._seen += 1
            if self._seen % self._publish_every:
                return
            filled = min(self._seen, self._window_rows)
            by_feature, score_index = stability_indices(
                self._reference, self._rows[:filled], self._scores[:filled]
            )
        self._recorder.record(by_feature, score_index, filled)
