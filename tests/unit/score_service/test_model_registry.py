"""The model registry, with fake models behind the ports: loads, warm-up, swaps, follows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pytest
from numpy.typing import NDArray

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.score.domain import error_reasons
from services.score.domain.features import FEATURE_COUNT, FEATURE_NAMES
from services.score.service.model_registry import ModelRegistry
from services.score.service.ports import ModelOutputs, ModelRejectedError, ModelVersionNotFoundError


@dataclass(frozen=True)
class FakeModel:
    """Log-odds of 0.1 per unit of the first feature; contributions add up unless `broken`."""

    version: str
    broken: bool = False
    model_card_json: str = "{}"
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def feature_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES

    def score_rows(self, rows: NDArray[np.float64]) -> ModelOutputs:
        log_odds = 0.1 * rows[:, 0]
        contributions = np.zeros((len(rows), FEATURE_COUNT))
        contributions[:, 0] = log_odds + (1.0 if self.broken else 0.0)
        return ModelOutputs(
            probability_of_default=1 / (1 + np.exp(-log_odds)),
            log_odds_of_default=log_odds,
            contributions=contributions,
            bias=np.zeros(len(rows)),
        )

    def probabilities_and_log_odds(
        self, rows: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        outputs = self.score_rows(rows)
        return outputs.probability_of_default, outputs.log_odds_of_default


class FakeLoader:
    def __init__(self, *versions: str, broken: tuple[str, ...] = (), corrupt: str = "") -> None:
        self.versions = list(versions)
        self.broken = broken
        self.corrupt = corrupt
        self.loads: list[str] = []

    def newest_version(self) -> str | None:
        return self.versions[-1] if self.versions else None

    def load(self, model_version: str) -> FakeModel:
        self.loads.append(model_version)
        if model_version not in self.versions:
            raise ModelVersionNotFoundError(model_version)
        if model_version == self.corrupt:
            raise ModelRejectedError(f"{model_version}: the graph cannot be loaded")
        return FakeModel(model_version, broken=model_version in self.broken)


class FakeChoice:
    def __init__(self) -> None:
        self.published: list[str] = []

    def publish(self, text: str) -> None:
        self.published.append(text)

    def read(self) -> tuple[int, str]:
        return len(self.published), self.published[-1] if self.published else ""


def test_no_model_is_handed_out_before_the_first_is_loaded() -> None:
    registry = ModelRegistry(FakeLoader("1.0.0"))

    with pytest.raises(Unavailable) as raised:
        registry.current()
    assert raised.value.reason == error_reasons.MODEL_NOT_LOADED


def test_an_empty_version_loads_the_newest() -> None:
    registry = ModelRegistry(FakeLoader("1.0.0", "1.1.0"))

    assert registry.load_initial().version == "1.1.0"
    assert registry.current().version == "1.1.0"


def test_without_any_model_the_first_load_is_not_found() -> None:
    with pytest.raises(NotFound) as raised:
        ModelRegistry(FakeLoader()).load_initial()
    assert raised.value.reason == error_reasons.MODEL_VERSION_NOT_FOUND


def test_a_model_whose_contributions_do_not_add_up_is_rejected_and_the_old_one_serves() -> None:
    registry = ModelRegistry(FakeLoader("1.0.0", "2.0.0", broken=("2.0.0",)))
    registry.load_initial("1.0.0")

    with pytest.raises(FailedPrecondition) as raised:
        registry.reload("swap-to-broken", "2.0.0")

    assert raised.value.reason == error_reasons.MODEL_REJECTED
    assert raised.value.metadata == {"model_version": "2.0.0"}
    assert registry.current().version == "1.0.0"


def test_a_model_the_loader_rejects_is_refused_naming_the_newest_version() -> None:
    registry = ModelRegistry(FakeLoader("1.0.0", "2.0.0", corrupt="2.0.0"))
    registry.load_initial("1.0.0")

    with pytest.raises(FailedPrecondition) as raised:
        registry.reload("newest", "")

    assert raised.value.metadata == {"model_version": "2.0.0"}
    assert registry.current().version == "1.0.0"


def test_an_unknown_version_is_not_found() -> None:
    registry = ModelRegistry(FakeLoader("1.0.0"))
    registry.load_initial()

    with pytest.raises(NotFound) as raised:
        registry.reload("unknown", "9.9.9")
    assert raised.value.reason == error_reasons.MODEL_VERSION_NOT_FOUND


def test_a_retried_reload_answers_the_same_without_loading_again() -> None:
    loader = FakeLoader("1.0.0", "1.0.1")
    choice = FakeChoice()
    registry = ModelRegistry(loader, model_choice=choice)
    registry.load_initial("1.0.0")

    first = registry.reload("swap-1", "1.0.1")
    again = registry.reload("swap-1", "1.0.1")

    assert first == again
    assert (first.model_version, first.previous_model_version) == ("1.0.1", "1.0.0")
    assert loader.loads == ["1.0.0", "1.0.1"]
    assert choice.published == ["1.0.1"]


def test_a_reload_names_every_bad_field_at_once() -> None:
    registry = ModelRegistry(FakeLoader("1.0.0"))

    with pytest.raises(InvalidArgument) as raised:
        registry.reload("", "../1.0.0")

    assert [(v.field, v.reason) for v in raised.value.field_violations] == [
        ("request_id", error_reasons.REQUEST_ID_REQUIRED),
        ("model_version", error_reasons.MODEL_VERSION_INVALID),
    ]


def test_following_swaps_to_a_published_version_and_ignores_one_that_fails() -> None:
    loader = FakeLoader("1.0.0", "1.0.1", "2.0.0", broken=("2.0.0",))
    registry = ModelRegistry(loader)
    registry.load_initial("1.0.0")

    registry.follow("1.0.1")
    registry.follow("1.0.1")  # serves already: not loaded again
    registry.follow("2.0.0")  # fails its warm-up here: 1.0.1 keeps serving

    assert registry.current().version == "1.0.1"
    assert loader.loads == ["1.0.0", "1.0.1", "2.0.0"]
