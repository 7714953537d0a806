"""The score service's use cases: score users from the ledger, score feature rows, swap models.

Plain values in and out (no protobuf); `services.score.api.servicer` does the mapping.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import structlog
from numpy.typing import NDArray

from services.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SesameError,
    Unavailable,
)
from services.score.domain import model_contract, scoring
from services.score.domain.features import FEATURE_COUNT, compute_features
from services.score.domain.reasons import Reason, principal_reasons
from services.score.domain.scoring import score_from_log_odds
from services.score.domain.thin_file import ThinFileReason, thin_file_reason
from services.score.service.feature_cache import FeatureCache
from services.score.service.model_files import ModelFileError, newest_model_directory
from services.score.service.model_runtime import (
    ModelRejectedError,
    ModelRuntime,
    load_model_runtime,
)
from services.score.service.ports import CreditHistorySource, ModelChoice
from services.score.service.shadow import ShadowRecorder, ShadowScorer

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

USER_ID_LENGTH_MAX = 128
REQUEST_ID_LENGTH_MAX = 128
BATCH_USERS_MAX = 1000
FEATURE_ROWS_MAX = 100_000
HISTORY_FETCH_THREADS_DEFAULT = 16
# ReloadModel answers remembered by request id, so a retried reload answers the same.
RELOAD_ANSWERS_REMEMBERED = 1000

MODEL_NOT_LOADED = "MODEL_NOT_LOADED"
MODEL_REJECTED = "MODEL_REJECTED"
MODEL_VERSION_NOT_FOUND = "MODEL_VERSION_NOT_FOUND"
INVALID_USER_ID = "INVALID_USER_ID"


@dataclass(frozen=True)
class UserFeatures:
    """What scoring needs from a user's history: cached, and independent of the model."""

    thin_file_reason: ThinFileReason | None
    features: tuple[float, ...] | None
    data_as_of: datetime | None


@dataclass(frozen=True)
class ScoreResult:
    """A score with its explanation; `score` is 0 and reasons empty for a thin file."""

    user_id: str
    score: int
    probability_of_default: float
    reasons: tuple[Reason, ...]
    model_version: str
    data_as_of: datetime | None
    thin_file_reason: ThinFileReason | None


@dataclass(frozen=True)
class CachedUser:
    """What the feature cache keeps of a user: the features, and their score by the model that
    served when they were read, so repeated calls skip the model for as long as it serves."""

    features: UserFeatures
    score: ScoreResult
    scored_by: datetime  # the `loaded_at` of the runtime that computed `score`


@dataclass(frozen=True)
class RowScores:
    """Scores of explicit feature rows, column by column: one entry per row in each."""

    scores: NDArray[np.int64]
    probabilities_of_default: NDArray[np.float64]
    reasons: list[tuple[Reason, ...]] | None  # None when reasons were not asked for
    model_version: str


@dataclass(frozen=True)
class UserScoreResult:
    """One user's answer in a batch: a score, or the stable reason there is none."""

    user_id: str
    score: ScoreResult | None
    error_reason: str


@dataclass(frozen=True)
class ReloadResult:
    model_version: str
    previous_model_version: str


class ScoreService:
    """Scores users and rows with the current model; the model can be swapped at any time."""

    def __init__(
        self,
        histories: CreditHistorySource,
        cache: FeatureCache[CachedUser],
        models_root: Path,
        *,
        history_fetch_threads: int = HISTORY_FETCH_THREADS_DEFAULT,
        model_choice: ModelChoice | None = None,
    ) -> None:
        self._histories = histories
        self._model_choice = model_choice
        self._cache = cache
        self._models_root = models_root
        self._fetch_pool = ThreadPoolExecutor(
            max_workers=history_fetch_threads, thread_name_prefix="history-fetch"
        )
        # Read without a lock: replacing a reference is atomic in Python, and each call takes
        # the reference once, so it finishes on the runtime it started with.
        self._runtime: ModelRuntime | None = None
        self._reload_lock = threading.Lock()
        self._reload_answers: OrderedDict[str, ReloadResult] = OrderedDict()
        self._shadow: ShadowScorer | None = None

    # ------------------------------------------------------------------------------------------
    # Models

    def load_initial_model(self, model_version: str = "") -> ModelRuntime:
        runtime = load_model_runtime(self._model_directory(model_version))
        self._runtime = runtime
        log.info("model_loaded", model_version=runtime.version)
        return runtime

    def start_shadow_model(self, model_version: str, recorder: ShadowRecorder) -> None:
        """Scores every new user score with `model_version` too, measured and never served.

        A shadow that fails to load is logged and left out: it must never stop serving.
        """
        try:
            runtime = load_model_runtime(self._model_directory(model_version))
        except (ModelRejectedError, SesameError) as error:
            log.error("shadow_model_not_loaded", model_version=model_version, why=str(error))
            return
        self._shadow = ShadowScorer(runtime, recorder)
        log.info("shadow_model_loaded", model_version=runtime.version)

    @property
    def shadow_model_version(self) -> str:
        return self._shadow.version if self._shadow is not None else ""

    def current_model(self) -> ModelRuntime:
        runtime = self._runtime
        if runtime is None:
            raise Unavailable("no model is loaded yet", reason=MODEL_NOT_LOADED)
        return runtime

    def reload_model(self, request_id: str, model_version: str) -> ReloadResult:
        _check_identifier("request_id", request_id, REQUEST_ID_LENGTH_MAX)
        with self._reload_lock:
            remembered = self._reload_answers.get(request_id)
            if remembered is not None:
                return remembered
            directory = self._model_directory(model_version)
            try:
                runtime = load_model_runtime(directory)
            except ModelRejectedError as error:
                log.warning("model_rejected", model_version=directory.name, why=str(error))
                raise FailedPrecondition(
                    "the model was rejected; the previous model keeps serving",
                    reason=MODEL_REJECTED,
                    metadata={"model_version": directory.name},
                ) from error
            result = self._swap(runtime)
            self._remember(request_id, result)
            if self._model_choice is not None:
                self._model_choice.publish(runtime.version)
        return result

    def follow_model(self, model_version: str) -> None:
        """Swaps to the version another worker swapped to, unless it serves already.

        A version that fails to load here is logged and the current model keeps serving.
        """
        with self._reload_lock:
            current = self._runtime
            if current is not None and current.version == model_version:
                return
            try:
                runtime = load_model_runtime(self._model_directory(model_version))
            except (ModelRejectedError, SesameError) as error:
                log.error("model_follow_failed", model_version=model_version, why=str(error))
                return
            self._swap(runtime)

    def _swap(self, runtime: ModelRuntime) -> ReloadResult:
        previous = self._runtime
        self._runtime = runtime
        result = ReloadResult(runtime.version, previous.version if previous else "")
        log.info(
            "model_swapped",
            model_version=runtime.version,
            previous_model_version=result.previous_model_version,
        )
        return result

    def _remember(self, request_id: str, result: ReloadResult) -> None:
        self._reload_answers[request_id] = result
        while len(self._reload_answers) > RELOAD_ANSWERS_REMEMBERED:
            self._reload_answers.popitem(last=False)

    def _model_directory(self, model_version: str) -> Path:
        """The directory of the given version, or of the newest when the version is empty."""
        if not model_version:
            try:
                return newest_model_directory(self._models_root)
            except ModelFileError:
                raise NotFound("no model is available", reason=MODEL_VERSION_NOT_FOUND) from None
        try:
            model_contract.version_key(model_version)
        except ValueError:
            raise InvalidArgument.for_field(
                "model_version", "must be dotted numbers, for example 1.0.0"
            ) from None
        directory = self._models_root / model_version
        if not directory.is_dir():
            raise NotFound(
                "no model has this version",
                reason=MODEL_VERSION_NOT_FOUND,
                metadata={"model_version": model_version},
            )
        return directory

    # ------------------------------------------------------------------------------------------
    # Users

    def get_score(self, user_id: str, as_of: datetime | None) -> ScoreResult:
        _check_identifier("user_id", user_id, USER_ID_LENGTH_MAX)
        runtime = self.current_model()
        return self._user_score(runtime, user_id, as_of)

    def cached_score(self, user_id: str, as_of: datetime | None) -> ScoreResult | None:
        """The user's score if the cache holds one by the serving model, else None; never
        blocks (no ledger read, no model run), so it can answer on an event loop."""
        _check_identifier("user_id", user_id, USER_ID_LENGTH_MAX)
        runtime = self.current_model()
        cached = self._cache.get((user_id, as_of))
        if cached is not None and cached.scored_by == runtime.loaded_at:
            return cached.score
        return None

    def batch_get_scores(
        self, user_ids: Sequence[str], as_of: datetime | None
    ) -> list[UserScoreResult]:
        if not 1 <= len(user_ids) <= BATCH_USERS_MAX:
            raise InvalidArgument.for_field("user_ids", f"must list 1 to {BATCH_USERS_MAX} users")
        runtime = self.current_model()
        answers = self._fetch_pool.map(
            lambda user_id: self._user_score_or_error(runtime, user_id, as_of), user_ids
        )
        return [
            UserScoreResult(user_id, answer, "")
            if isinstance(answer, ScoreResult)
            else UserScoreResult(user_id, None, answer)
            for user_id, answer in zip(user_ids, answers, strict=True)
        ]

    def _user_score_or_error(
        self, runtime: ModelRuntime, user_id: str, as_of: datetime | None
    ) -> ScoreResult | str:
        try:
            _check_identifier("user_id", user_id, USER_ID_LENGTH_MAX)
        except InvalidArgument:
            return INVALID_USER_ID
        try:
            return self._user_score(runtime, user_id, as_of)
        except SesameError as error:
            return error.reason

    def _user_score(
        self, runtime: ModelRuntime, user_id: str, as_of: datetime | None
    ) -> ScoreResult:
        """The user's score by `runtime`, from the cache when it holds one by this runtime."""
        key = (user_id, as_of)
        cached = self._cache.get(key)
        if cached is not None:
            if cached.scored_by == runtime.loaded_at:
                return cached.score
            return _score_user(runtime, user_id, cached.features)  # the model was swapped
        epoch = self._cache.epoch()
        read = self._histories.get_credit_history(user_id, as_of)
        reason = thin_file_reason(read.history)
        features = UserFeatures(
            reason, compute_features(read.history) if reason is None else None, read.data_as_of
        )
        score = _score_user(runtime, user_id, features)
        if self._shadow is not None and features.features is not None:
            self._shadow.offer(features.features, score.score)
        cached = CachedUser(features, score, runtime.loaded_at)
        self._cache.put(key, cached, read.last_global_sequence, epoch)
        return score

    # ------------------------------------------------------------------------------------------
    # Rows

    def score_features(
        self, feature_values: Sequence[float] | NDArray[np.float64], include_reasons: bool
    ) -> RowScores:
        """Scores of rows given as one flat, row-major list of FEATURE_COUNT values per row."""
        matrix = _checked_matrix(feature_values)
        runtime = self.current_model()
        if not include_reasons:
            probabilities, log_odds = runtime.probabilities_and_log_odds(matrix)
            return RowScores(
                scores=scores_from_log_odds(log_odds),
                probabilities_of_default=probabilities,
                reasons=None,
                model_version=runtime.version,
            )
        outputs = runtime.score_rows(matrix)
        contributions = outputs.contributions.tolist()
        return RowScores(
            scores=scores_from_log_odds(outputs.log_odds_of_default),
            probabilities_of_default=outputs.probability_of_default,
            reasons=[
                principal_reasons(row, row_contributions)
                for row, row_contributions in zip(matrix.tolist(), contributions, strict=True)
            ],
            model_version=runtime.version,
        )

    def close(self) -> None:
        self._fetch_pool.shutdown(wait=False, cancel_futures=True)
        if self._shadow is not None:
            self._shadow.stop()


def _check_identifier(field: str, value: str, length_max: int) -> None:
    if not 1 <= len(value) <= length_max:
        raise InvalidArgument.for_field(field, f"must be 1 to {length_max} characters")
    if not (value.isascii() and value.isprintable()):
        raise InvalidArgument.for_field(field, "must be printable ASCII")


def _matrix(rows: Sequence[Sequence[float]]) -> NDArray[np.float64]:
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), FEATURE_COUNT)


def _checked_matrix(feature_values: Sequence[float] | NDArray[np.float64]) -> NDArray[np.float64]:
    """The flat values as rows; a length that is no whole number of rows, too many or too few
    rows, or a value that is not finite is refused naming the field."""
    values = np.asarray(feature_values, dtype=np.float64)
    rows, remainder = divmod(len(values), FEATURE_COUNT)
    if remainder:
        raise InvalidArgument.for_field(
            "feature_values",
            f"must hold {FEATURE_COUNT} values per row, got {len(values)} values",
        )
    if not 1 <= rows <= FEATURE_ROWS_MAX:
        raise InvalidArgument.for_field(
            "feature_values", f"must hold 1 to {FEATURE_ROWS_MAX} rows, got {rows}"
        )
    finite = np.isfinite(values)
    if not finite.all():
        index = int(np.argmin(finite))
        raise InvalidArgument.for_field(f"feature_values[{index}]", "must be finite")
    return values.reshape(rows, FEATURE_COUNT)


def scores_from_log_odds(log_odds: NDArray[np.float64]) -> NDArray[np.int64]:
    """`scoring.score_from_log_odds` over an array: the same rounding half up and clamping."""
    unclamped = scoring.OFFSET - scoring.FACTOR * log_odds
    return np.clip(np.floor(unclamped + 0.5), scoring.SCORE_MIN, scoring.SCORE_MAX).astype(np.int64)


def _score_user(runtime: ModelRuntime, user_id: str, user_features: UserFeatures) -> ScoreResult:
    if user_features.features is None:
        return _thin_file_result(user_id, user_features, runtime.version)
    outputs = runtime.score_rows(_matrix([user_features.features]))
    return _scored_result(
        user_id,
        user_features.features,
        float(outputs.probability_of_default[0]),
        float(outputs.log_odds_of_default[0]),
        outputs.contributions[0],
        runtime.version,
        user_features.data_as_of,
    )


def _thin_file_result(user_id: str, user_features: UserFeatures, version: str) -> ScoreResult:
    return ScoreResult(
        user_id=user_id,
        score=0,
        probability_of_default=0.0,
        reasons=(),
        model_version=version,
        data_as_of=user_features.data_as_of,
        thin_file_reason=user_features.thin_file_reason,
    )


def _scored_result(
    user_id: str,
    features: tuple[float, ...],
    probability_of_default: float,
    log_odds_of_default: float,
    contributions: NDArray[np.float64],
    version: str,
    data_as_of: datetime | None,
) -> ScoreResult:
    assert math.isfinite(log_odds_of_default)
    return ScoreResult(
        user_id=user_id,
        score=score_from_log_odds(log_odds_of_default),
        probability_of_default=probability_of_default,
        reasons=principal_reasons(features, contributions.tolist()),
        model_version=version,
        data_as_of=data_as_of,
        thin_file_reason=None,
    )
