"""The model registry: which model serves now, and how it changes.

It loads models through the `ModelLoader` port and warms each one up before it may serve
(`model_warm_up`); it swaps models on ReloadModel (idempotent by request id), follows the swaps
of sibling worker processes (`model_sync`), and runs an optional shadow model (`shadow`). The
scoring use cases (`score_service`) ask it for the current model once per call, so a call
finishes on the model it started with, whatever is swapped in meanwhile.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import structlog

from services.common.errors import FailedPrecondition, NotFound, SesameError, Unavailable
from services.common.validation import Violations
from services.score.domain import error_reasons, model_contract
from services.score.service.model_warm_up import warm_up
from services.score.service.ports import (
    Model,
    ModelChoice,
    ModelLoader,
    ModelRejectedError,
    ModelVersionNotFoundError,
)
from services.score.service.shadow import ShadowRecorder, ShadowScorer

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

# ReloadModel answers remembered by request id, so a retried reload answers the same.
RELOAD_ANSWERS_REMEMBERED = 1000


@dataclass(frozen=True)
class ReloadResult:
    model_version: str
    previous_model_version: str


class ModelRegistry:
    """Hands out the current model; loads, swaps and follows models, and runs the shadow."""

    def __init__(self, loader: ModelLoader, *, model_choice: ModelChoice | None = None) -> None:
        self._loader = loader
        self._model_choice = model_choice
        # Read without a lock: replacing a reference is atomic in Python, and each call takes
        # the reference once, so it finishes on the model it started with.
        self._model: Model | None = None
        self._reload_lock = threading.Lock()
        self._reload_answers: OrderedDict[str, ReloadResult] = OrderedDict()
        self._shadow: ShadowScorer | None = None

    def current(self) -> Model:
        """The model serving now; UNAVAILABLE (MODEL_NOT_LOADED) before the first is warm."""
        model = self._model
        if model is None:
            raise Unavailable("no model is loaded yet", reason=error_reasons.MODEL_NOT_LOADED)
        return model

    @property
    def shadow(self) -> ShadowScorer | None:
        return self._shadow

    @property
    def shadow_model_version(self) -> str:
        return self._shadow.version if self._shadow is not None else ""

    def load_initial(self, model_version: str = "") -> Model:
        """Loads and warms up the first model: the given version, or the newest when empty."""
        _check_version(model_version)
        model = self._load(self._resolved(model_version))
        self._model = model
        log.info("model_loaded", model_version=model.version)
        return model

    def start_shadow(self, model_version: str, recorder: ShadowRecorder) -> None:
        """Scores every new user score with `model_version` too, measured and never served.

        A shadow that fails to load is logged and left out: it must never stop serving.
        """
        try:
            _check_version(model_version)
            model = self._load(self._resolved(model_version))
        except (ModelRejectedError, SesameError) as error:
            log.error("shadow_model_not_loaded", model_version=model_version, why=str(error))
            return
        self._shadow = ShadowScorer(model, recorder)
        log.info("shadow_model_loaded", model_version=model.version)

    def reload(self, request_id: str, model_version: str) -> ReloadResult:
        """Swaps in the given version (the newest when empty) once it is loaded and warm.

        A retried request id answers as its first successful call did. A model that fails to
        load leaves the current one serving.
        """
        violations = Violations()
        violations.request_id(request_id)
        _add_version_problem(violations, model_version)
        violations.raise_if_any()
        with self._reload_lock:
            remembered = self._reload_answers.get(request_id)
            if remembered is not None:
                return remembered
            version = self._resolved(model_version)
            try:
                model = self._load(version)
            except ModelRejectedError as error:
                log.warning("model_rejected", model_version=version, why=str(error))
                raise FailedPrecondition(
                    "the model was rejected; the previous model keeps serving",
                    reason=error_reasons.MODEL_REJECTED,
                    metadata={"model_version": version},
                ) from error
            result = self._swap(model)
            self._remember(request_id, result)
            if self._model_choice is not None:
                self._model_choice.publish(model.version)
        return result

    def follow(self, model_version: str) -> None:
        """Swaps to the version another worker swapped to, unless it serves already.

        A version that fails to load here is logged and the current model keeps serving.
        """
        with self._reload_lock:
            current = self._model
            if current is not None and current.version == model_version:
                return
            try:
                _check_version(model_version)
                model = self._load(self._resolved(model_version))
            except (ModelRejectedError, SesameError) as error:
                log.error("model_follow_failed", model_version=model_version, why=str(error))
                return
            self._swap(model)

    def close(self) -> None:
        if self._shadow is not None:
            self._shadow.stop()

    def _resolved(self, model_version: str) -> str:
        """The version to load: the one given, or the newest when it is empty."""
        if model_version:
            return model_version
        newest = self._loader.newest_version()
        if newest is None:
            raise NotFound("no model is available", reason=error_reasons.MODEL_VERSION_NOT_FOUND)
        return newest

    def _load(self, model_version: str) -> Model:
        """The model of that version, loaded and warmed up; raises `ModelRejectedError` for a
        model unfit to serve and NOT_FOUND for an unknown version."""
        try:
            model = self._loader.load(model_version)
        except ModelVersionNotFoundError:
            raise NotFound(
                "no model has this version",
                reason=error_reasons.MODEL_VERSION_NOT_FOUND,
                metadata={"model_version": model_version},
            ) from None
        warm_up(model)
        return model

    def _swap(self, model: Model) -> ReloadResult:
        previous = self._model
        self._model = model
        result = ReloadResult(model.version, previous.version if previous else "")
        log.info(
            "model_swapped",
            model_version=model.version,
            previous_model_version=result.previous_model_version,
        )
        return result

    def _remember(self, request_id: str, result: ReloadResult) -> None:
        self._reload_answers[request_id] = result
        while len(self._reload_answers) > RELOAD_ANSWERS_REMEMBERED:
            self._reload_answers.popitem(last=False)


def _check_version(model_version: str) -> None:
    violations = Violations()
    _add_version_problem(violations, model_version)
    violations.raise_if_any()


def _add_version_problem(violations: Violations, model_version: str) -> None:
    """A model version is empty (the newest) or dotted numbers, as model directories are named."""
    if not model_version:
        return
    try:
        model_contract.version_key(model_version)
    except ValueError:
        violations.add(
            "model_version",
            error_reasons.MODEL_VERSION_INVALID,
            "must be dotted numbers, for example 1.0.0",
        )
