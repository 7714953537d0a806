"""The score service's scoring use cases: score users from the ledger, score feature rows.

Every call asks the model registry (`model_registry`) for the current model once and finishes
on it. Plain values in and out (no protobuf); `services.score.api` does the mapping.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from services.common.errors import SesameError
from services.common.history_cache import HistoryCache
from services.common.validation import VIOLATIONS_REPORTED_MAX, Violations, id_problem
from services.score.domain import error_reasons, scoring
from services.score.domain.actions import Action, OfferedAction, applicable_actions, offered_actions
from services.score.domain.consent import require_consent
from services.score.domain.features import (
    FEATURE_COUNT,
    FEATURES,
    feature_window,
    features_of_window,
    sesame_record,
)
from services.score.domain.fulfilment import SesameRecord
from services.score.domain.history import CreditHistory
from services.score.domain.reasons import Reason, principal_reasons
from services.score.domain.record_age import without_expired_negative_records
from services.score.domain.scoring import score_from_log_odds
from services.score.domain.thin_file import ThinFileReason, thin_file_reason_of_window
from services.score.service.drift_watch import DriftWatch
from services.score.service.model_registry import ModelRegistry
from services.score.service.ports import CreditHistorySource, Model

BATCH_USERS_MAX = 1000
FEATURE_ROWS_MAX = 100_000
HISTORY_FETCH_THREADS_DEFAULT = 16
# Which values of a feature row may be NaN: the features read against a credit line, which are
# missing when there is none.
_MAY_BE_MISSING = np.array([feature.reads_credit_line for feature in FEATURES])
# The values each feature can take (`Feature.low`, `high`, `whole`), column by column.
_LOWEST = np.array([feature.low for feature in FEATURES], dtype=np.float64)
_HIGHEST = np.array([feature.high for feature in FEATURES], dtype=np.float64)
_WHOLE = np.array([feature.whole for feature in FEATURES])


@dataclass(frozen=True)
class UserFeatures:
    """What scoring needs from a user's history: cached, and independent of the model."""

    thin_file_reason: ThinFileReason | None
    features: tuple[float, ...] | None
    data_as_of: datetime | None
    # What the score rests on: the window's partner statements and Sesame obligations.
    partner_statement_count: int = 0
    sesame_obligation_count: int = 0
    # Sesame's own record, for the reasons; None for a thin file.
    record: SesameRecord | None = None
    # The actions that apply to the history, each with the features it would leave.
    action_rows: tuple[tuple[Action, tuple[float, ...]], ...] = ()
    # The global sequence of the user's latest ledger entry the history reflects.
    ledger_sequence: int = 0


@dataclass(frozen=True)
class ScoreResult:
    """A score with its explanation; for a thin file `score` is 0, there is no probability of
    default (None) and no reason."""

    user_id: str
    score: int
    probability_of_default: float | None
    reasons: tuple[Reason, ...]
    model_version: str
    data_as_of: datetime | None
    thin_file_reason: ThinFileReason | None
    # How many partner statements and Sesame obligations of the window the score rests on.
    partner_statement_count: int = 0
    sesame_obligation_count: int = 0
    # What would help: the actions that raise this score, each with the score it reaches.
    actions: tuple[OfferedAction, ...] = ()
    # The global sequence of the user's latest ledger entry the score reflects (0: none).
    ledger_sequence: int = 0


@dataclass(frozen=True)
class CachedUser:
    """What the feature cache keeps of a user: the features, and their score by the model that
    served when they were read, so repeated calls skip the model for as long as it serves."""

    features: UserFeatures
    score: ScoreResult
    scored_by: datetime  # the `loaded_at` of the model that computed `score`


@dataclass(frozen=True)
class RowScores:
    """Scores of explicit feature rows, column by column: one entry per row in each."""

    scores: NDArray[np.int64]
    probabilities_of_default: NDArray[np.float64]
    reasons: list[tuple[Reason, ...]] | None  # None when reasons were not asked for
    model_version: str


@dataclass(frozen=True)
class UserScoreResult:
    """One user's answer in a batch: a score, or the error a GetScore of the user would raise."""

    user_id: str
    score: ScoreResult | None
    error: SesameError | None


class ScoreService:
    """Scores users and rows with the model the registry serves now."""

    def __init__(
        self,
        histories: CreditHistorySource,
        cache: HistoryCache[CachedUser],
        models: ModelRegistry,
        *,
        history_fetch_threads: int = HISTORY_FETCH_THREADS_DEFAULT,
        drift: DriftWatch | None = None,
    ) -> None:
        self._histories = histories
        self._drift = drift
        self._cache = cache
        self._models = models
        self._fetch_pool = ThreadPoolExecutor(
            max_workers=history_fetch_threads, thread_name_prefix="history-fetch"
        )

    # ------------------------------------------------------------------------------------------
    # Users
    #
    # `violations`: what the caller already found wrong reading the request (a timestamp out of
    # range, say), so that one error names every bad field of the request.

    def get_score(
        self, user_id: str, as_of: datetime | None, violations: Violations | None = None
    ) -> ScoreResult:
        _check_user_id("user_id", user_id, violations)
        return self._user_score(self._models.current(), user_id, as_of)

    def cached_score(
        self, user_id: str, as_of: datetime | None, violations: Violations | None = None
    ) -> ScoreResult | None:
        """The user's score if the cache holds one by the serving model, else None; never
        blocks (no ledger read, no model run), so it can answer on an event loop."""
        _check_user_id("user_id", user_id, violations)
        model = self._models.current()
        cached = self._cache.get((user_id, as_of))
        if cached is not None and cached.scored_by == model.loaded_at:
            return cached.score
        return None

    def batch_get_scores(
        self,
        user_ids: Sequence[str],
        as_of: datetime | None,
        violations: Violations | None = None,
    ) -> list[UserScoreResult]:
        """Each user's score or error, in request order; a bad user id fails only its user."""
        if violations is None:
            violations = Violations()
        if not user_ids:
            violations.add("user_ids", error_reasons.FIELD_REQUIRED, "is required")
        elif len(user_ids) > BATCH_USERS_MAX:
            violations.add(
                "user_ids", error_reasons.TOO_MANY_USERS, f"must list at most {BATCH_USERS_MAX}"
            )
        violations.raise_if_any()
        model = self._models.current()
        # Each read runs in the caller's context (a copy each), so that the trace it is part of
        # follows it to the ledger.
        contexts = [contextvars.copy_context() for _ in user_ids]
        answers = self._fetch_pool.map(
            lambda context, index, user_id: context.run(
                self._user_score_or_error, model, index, user_id, as_of
            ),
            contexts,
            range(len(user_ids)),
            user_ids,
        )
        return [
            UserScoreResult(user_id, answer, None)
            if isinstance(answer, ScoreResult)
            else UserScoreResult(user_id, None, answer)
            for user_id, answer in zip(user_ids, answers, strict=True)
        ]

    def _user_score_or_error(
        self, model: Model, index: int, user_id: str, as_of: datetime | None
    ) -> ScoreResult | SesameError:
        try:
            _check_user_id(f"user_ids[{index}]", user_id)
            return self._user_score(model, user_id, as_of)
        except SesameError as error:
            return error

    def _user_score(self, model: Model, user_id: str, as_of: datetime | None) -> ScoreResult:
        """The user's score by `model`, from the cache when it holds one by this model."""
        key = (user_id, as_of)
        cached = self._cache.get(key)
        if cached is not None:
            if cached.scored_by == model.loaded_at:
                return cached.score
            return score_user(model, user_id, cached.features)  # the model was swapped
        epoch = self._cache.epoch()
        read = self._histories.get_credit_history(user_id, as_of)
        # Only a user who consents now is scored; a refusal is not cached, so the user's next
        # call reads the ledger again, and the cache holds scores of consenting users alone
        # (a withdrawal, on the entry stream, drops them).
        require_consent(read.consent)
        features = user_features_of(read.history, read.data_as_of, read.last_global_sequence)
        score = score_user(model, user_id, features)
        shadow = self._models.shadow
        if shadow is not None and features.features is not None:
            shadow.offer(features.features, score.score)
        if self._drift is not None and features.features is not None:
            self._drift.observe(model, features.features, score.score)
        cached = CachedUser(features, score, model.loaded_at)
        self._cache.put(key, cached, read.last_global_sequence, epoch)
        return score

    # ------------------------------------------------------------------------------------------
    # Rows

    def score_features(
        self, feature_values: Sequence[float] | NDArray[np.float64], include_reasons: bool
    ) -> RowScores:
        """Scores of rows given as one flat, row-major list of FEATURE_COUNT values per row."""
        matrix = _checked_matrix(feature_values)
        model = self._models.current()
        if not include_reasons:
            probabilities, log_odds = model.probabilities_and_log_odds(matrix)
            return RowScores(
                scores=scores_from_log_odds(log_odds),
                probabilities_of_default=probabilities,
                reasons=None,
                model_version=model.version,
            )
        outputs = model.score_rows(matrix)
        contributions = outputs.contributions.tolist()
        return RowScores(
            scores=scores_from_log_odds(outputs.log_odds_of_default),
            probabilities_of_default=outputs.probability_of_default,
            reasons=[
                principal_reasons(row, row_contributions)
                for row, row_contributions in zip(matrix.tolist(), contributions, strict=True)
            ],
            model_version=model.version,
        )

    def close(self) -> None:
        self._fetch_pool.shutdown(wait=False, cancel_futures=True)


def _check_user_id(field: str, user_id: str, violations: Violations | None = None) -> None:
    """Raises one INVALID_ARGUMENT naming every problem: the caller's and the user id's."""
    if violations is None and id_problem(user_id) is None:
        return  # the common case, on the hot path: one check and nothing built
    if violations is None:
        violations = Violations()
    violations.identifier(field, user_id)
    violations.raise_if_any()


def _matrix(rows: Sequence[Sequence[float]]) -> NDArray[np.float64]:
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), FEATURE_COUNT)


def _checked_matrix(feature_values: Sequence[float] | NDArray[np.float64]) -> NDArray[np.float64]:
    """The flat values as rows; raises one INVALID_ARGUMENT naming every problem otherwise: no
    values, a length that is no whole number of rows, too many rows, each value that is not
    finite (but for a NaN, missing, in a feature read against the credit line), and each value
    no history can give its feature (`feature_values[i]`, as many as a BadRequest reports)."""
    values = np.asarray(feature_values, dtype=np.float64)
    rows, remainder = divmod(len(values), FEATURE_COUNT)
    finite = np.isfinite(values)
    in_range = np.zeros(len(values), dtype=np.bool_)
    if not remainder:
        finite |= np.isnan(values) & np.tile(_MAY_BE_MISSING, rows)
        in_range = _in_range(values.reshape(rows, FEATURE_COUNT)).reshape(-1)
    if not remainder and 1 <= rows <= FEATURE_ROWS_MAX and finite.all() and in_range.all():
        return values.reshape(rows, FEATURE_COUNT)
    violations = Violations()
    if not len(values):
        violations.add("feature_values", error_reasons.FIELD_REQUIRED, "is required")
    elif remainder:
        violations.add(
            "feature_values",
            error_reasons.FEATURE_VALUES_NOT_WHOLE_ROWS,
            f"must hold {FEATURE_COUNT} values per row, got {len(values)} values",
        )
    if len(values) > FEATURE_ROWS_MAX * FEATURE_COUNT:
        violations.add(
            "feature_values",
            error_reasons.TOO_MANY_FEATURE_ROWS,
            f"must hold at most {FEATURE_ROWS_MAX} rows",
        )
    for index in np.flatnonzero(~finite)[:VIOLATIONS_REPORTED_MAX].tolist():
        violations.add(
            f"feature_values[{index}]",
            error_reasons.FEATURE_VALUE_NOT_FINITE,
            "must be finite (NaN only where the feature may be missing)",
        )
    if not remainder:
        for index in np.flatnonzero(finite & ~in_range)[:VIOLATIONS_REPORTED_MAX].tolist():
            feature = FEATURES[index % FEATURE_COUNT]
            violations.add(
                f"feature_values[{index}]",
                error_reasons.FEATURE_VALUE_OUT_OF_RANGE,
                f"{feature.name} must be {feature.range_text()}",
            )
    violations.raise_if_any()
    raise AssertionError("unreachable: a refused matrix has a violation")


def _in_range(matrix: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Which values are ones their feature can take (`Feature.holds`, column by column)."""
    with np.errstate(invalid="ignore"):
        inside: NDArray[np.bool_] = (matrix >= _LOWEST) & (matrix <= _HIGHEST)
        inside &= ~_WHOLE | (matrix == np.floor(matrix))
    missing_allowed: NDArray[np.bool_] = np.isnan(matrix) & _MAY_BE_MISSING
    return inside | missing_allowed


def scores_from_log_odds(log_odds: NDArray[np.float64]) -> NDArray[np.int64]:
    """`scoring.score_from_log_odds` over an array: the same rounding half up and clamping."""
    unclamped = scoring.OFFSET - scoring.FACTOR * log_odds
    return np.clip(np.floor(unclamped + 0.5), scoring.SCORE_MIN, scoring.SCORE_MAX).astype(np.int64)


def user_features_of(
    history: CreditHistory, data_as_of: datetime | None, ledger_sequence: int = 0
) -> UserFeatures:
    """What scoring needs of a history just read: its features (none for a thin file), what
    they rest on, Sesame's record and the feature rows the applicable actions would leave."""
    history = without_expired_negative_records(history)
    window = feature_window(history)
    reason = thin_file_reason_of_window(history, window)
    scored = reason is None
    return UserFeatures(
        reason,
        features_of_window(window) if scored else None,
        data_as_of,
        partner_statement_count=window.statement_count,
        sesame_obligation_count=len(window.obligations),
        record=sesame_record(history, window) if scored else None,
        action_rows=tuple(
            (action, features_of_window(after)) for action, after in applicable_actions(window)
        )
        if scored
        else (),
        ledger_sequence=ledger_sequence,
    )


def score_user(model: Model, user_id: str, user_features: UserFeatures) -> ScoreResult:
    """The user's score and reasons, and each applicable action checked by the same model in
    the same run: the user's row and the rows the actions would leave, scored together."""
    if user_features.features is None:
        return _thin_file_result(user_id, user_features, model.version)
    action_rows = user_features.action_rows
    outputs = model.score_rows(_matrix([user_features.features, *(row for _, row in action_rows)]))
    action_scores = scores_from_log_odds(outputs.log_odds_of_default[1:]).tolist()
    return _scored_result(
        user_id,
        user_features,
        float(outputs.probability_of_default[0]),
        float(outputs.log_odds_of_default[0]),
        outputs.contributions[0],
        model.version,
        [
            (action, reached)
            for (action, _), reached in zip(action_rows, action_scores, strict=True)
        ],
    )


def _thin_file_result(user_id: str, user_features: UserFeatures, version: str) -> ScoreResult:
    return ScoreResult(
        user_id=user_id,
        score=0,
        probability_of_default=None,
        reasons=(),
        model_version=version,
        data_as_of=user_features.data_as_of,
        thin_file_reason=user_features.thin_file_reason,
        partner_statement_count=user_features.partner_statement_count,
        sesame_obligation_count=user_features.sesame_obligation_count,
        ledger_sequence=user_features.ledger_sequence,
    )


def _scored_result(
    user_id: str,
    user_features: UserFeatures,
    probability_of_default: float,
    log_odds_of_default: float,
    contributions: NDArray[np.float64],
    version: str,
    checked_actions: Sequence[tuple[Action, int]],
) -> ScoreResult:
    assert math.isfinite(log_odds_of_default)
    assert user_features.features is not None
    score = score_from_log_odds(log_odds_of_default)
    return ScoreResult(
        user_id=user_id,
        score=score,
        probability_of_default=probability_of_default,
        reasons=principal_reasons(
            user_features.features, contributions.tolist(), user_features.record
        ),
        model_version=version,
        data_as_of=user_features.data_as_of,
        thin_file_reason=None,
        partner_statement_count=user_features.partner_statement_count,
        sesame_obligation_count=user_features.sesame_obligation_count,
        actions=offered_actions(score, checked_actions),
        ledger_sequence=user_features.ledger_sequence,
    )
