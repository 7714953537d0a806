"""Drift is watched: a stream of users like the training rows keeps every population stability
index low, and a stream shifted the way a changed population would be (everyone a month later
on every statement, lines a quarter the size) moves the score's and the features' indices past
the model card's alert threshold. Real histories (training rows, as the service would read
them) through the feature function and the committed model, as the service observes them."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Mapping

import numpy as np
import pytest

from services.datasets import taiwan
from services.score.adapters.model_files import MODELS_ROOT
from services.score.adapters.onnx_model import OnnxModelLoader
from services.score.domain.features import compute_features
from services.score.domain.history import CreditHistory, RepaymentStatus
from services.score.service.drift_watch import DriftWatch
from services.score.service.ports import Model
from services.score.service.score_service import scores_from_log_odds
from services.score.training import dataset

ROWS = 2_000


class Recorded:
    def __init__(self) -> None:
        self.features: Mapping[str, float] = {}
        self.score = float("nan")
        self.rows = 0

    def record(self, feature_indices: Mapping[str, float], score_index: float, rows: int) -> None:
        self.features, self.score, self.rows = dict(feature_indices), score_index, rows


@pytest.fixture(scope="module")
def model() -> Model:
    loader = OnnxModelLoader(MODELS_ROOT)
    version = loader.newest_version()
    assert version is not None
    return loader.load(version)


@pytest.fixture(scope="module")
def histories() -> list[CreditHistory]:
    rows = itertools.islice(taiwan.read_rows(dataset.TRAINING_DATA), ROWS)
    return [dataset.history_for_row(row) for row in rows]


def watched(
    model: Model, histories: list[CreditHistory], change: Callable[[CreditHistory], CreditHistory]
) -> Recorded:
    recorded = Recorded()
    watch = DriftWatch(recorded, window_rows=ROWS, publish_every=ROWS)
    rows = np.array([compute_features(change(history)) for history in histories])
    scores = scores_from_log_odds(model.probabilities_and_log_odds(rows)[1])
    for row, score in zip(rows, scores.tolist(), strict=True):
        watch.observe(model, row.tolist(), score)
    return recorded


def one_month_later_and_a_smaller_line(history: CreditHistory) -> CreditHistory:
    statements = tuple(
        dataclasses.replace(
            statement,
            repayment_status=RepaymentStatus.LATE,
            months_late=statement.months_late + 1,
        )
        for statement in history.statements
    )
    line = history.credit_line_minor
    return dataclasses.replace(
        history, statements=statements, credit_line_minor=None if line is None else line // 4
    )


def test_users_like_the_training_rows_keep_drift_low(
    model: Model, histories: list[CreditHistory]
) -> None:
    recorded = watched(model, histories, lambda history: history)

    assert recorded.rows == ROWS
    assert recorded.score < 0.1
    assert max(recorded.features.values()) < 0.1


def test_a_shifted_stream_moves_drift_past_the_alert_threshold(
    model: Model, histories: list[CreditHistory]
) -> None:
    threshold = json.loads(model.model_card_json)["drift_reference"]["alert_threshold"]

    recorded = watched(model, histories, one_month_later_and_a_smaller_line)

    assert recorded.score > threshold
    assert recorded.features["months_late_latest"] > threshold
    assert recorded.features["credit_line"] > threshold
