"""The scoring use cases, with a fake ledger and the committed model."""

from __future__ import annotations

import math
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, Unavailable
from services.common.history_cache import HistoryCache
from services.score.adapters.model_files import MODELS_ROOT, newest_model_directory
from services.score.adapters.onnx_model import OnnxModelLoader
from services.score.domain import error_reasons, scoring
from services.score.domain.consent import ConsentState
from services.score.domain.features import (
    FEATURE_COUNT,
    FEATURE_NAMES,
    FEATURES_READING_CREDIT_LINE,
)
from services.score.domain.history import (
    CreditHistory,
    ObligationOutcome,
    ObligationRecord,
    RepaymentStatus,
    StatementRecord,
)
from services.score.domain.thin_file import ThinFileReason
from services.score.service.model_registry import ModelRegistry
from services.score.service.ports import LedgerHistory
from services.score.service.score_service import (
    CachedUser,
    ScoreService,
    scores_from_log_odds,
)
from tests.support.feature_rows import valid_row, valid_rows

AS_OF = datetime(2005, 10, 1, tzinfo=UTC)


def six_paid_statements() -> tuple[StatementRecord, ...]:
    return tuple(
        StatementRecord(2005, month, 50_000, 50_000, RepaymentStatus.PAID_IN_FULL, 0)
        for month in range(9, 3, -1)
    )


class FakeLedger:
    def __init__(self) -> None:
        self.histories = {"known": CreditHistory(2_000_000, six_paid_statements(), as_of=AS_OF)}
        self.down_for: set[str] = set()
        self.reads = 0
        # Every user consents unless a test says otherwise.
        self.consents: dict[str, ConsentState] = {}

    def get_credit_history(self, user_id: str, as_of: datetime | None) -> LedgerHistory:
        self.reads += 1
        if user_id in self.down_for:
            raise Unavailable("down", reason="LEDGER_UNAVAILABLE")
        history = self.histories.get(user_id, CreditHistory(None, (), as_of=as_of))
        consent = self.consents.get(user_id, ConsentState.GRANTED)
        return LedgerHistory(history, as_of, consent=consent)


@pytest.fixture
def ledger() -> FakeLedger:
    return FakeLedger()


def models_from(models_root: Path) -> ModelRegistry:
    return ModelRegistry(OnnxModelLoader(models_root))


@pytest.fixture
def service(ledger: FakeLedger) -> ScoreService:
    models = models_from(MODELS_ROOT)
    models.load_initial()
    return ScoreService(ledger, HistoryCache[CachedUser](), models)


def test_a_known_user_gets_a_score_in_range_with_at_most_four_reasons(
    service: ScoreService,
) -> None:
    result = service.get_score("known", AS_OF)

    assert 350 <= result.score <= 950
    assert result.thin_file_reason is None
    assert len(result.reasons) <= 4


def test_an_unknown_user_is_a_thin_file(service: ScoreService) -> None:
    result = service.get_score("stranger", AS_OF)

    assert result.thin_file_reason is ThinFileReason.NO_HISTORY
    assert result.score == 0 and result.reasons == ()


def sesame_obligation(
    month: int, outcome: ObligationOutcome = ObligationOutcome.ON_TIME
) -> ObligationRecord:
    paid = 0 if outcome is ObligationOutcome.DEFAULTED else 300
    return ObligationRecord(300, paid, datetime(2005, month, 5, tzinfo=UTC), outcome)


def test_the_answer_says_how_many_statements_and_obligations_it_rests_on(
    service: ScoreService, ledger: FakeLedger
) -> None:
    ledger.histories["mixed"] = CreditHistory(
        2_000_000,
        six_paid_statements()[:4],
        (sesame_obligation(9), sesame_obligation(8), sesame_obligation(2)),  # February: too old
        as_of=AS_OF,
    )
    ledger.histories["starting"] = CreditHistory(None, (), (sesame_obligation(9),), as_of=AS_OF)

    mixed, starting = service.get_score("mixed", AS_OF), service.get_score("starting", AS_OF)

    assert (mixed.partner_statement_count, mixed.sesame_obligation_count) == (4, 2)
    assert starting.thin_file_reason is ThinFileReason.TOO_FEW_MONTHS_ON_RECORD
    assert (starting.partner_statement_count, starting.sesame_obligation_count) == (0, 1)


def test_a_user_with_only_sesame_history_is_scored_and_a_default_is_named(
    service: ScoreService, ledger: FakeLedger
) -> None:
    kept = (sesame_obligation(8), sesame_obligation(7), sesame_obligation(6))
    ledger.histories["kept"] = CreditHistory(None, (), kept, as_of=AS_OF)
    ledger.histories["broke"] = CreditHistory(
        None, (), (sesame_obligation(9, ObligationOutcome.DEFAULTED), *kept), as_of=AS_OF
    )

    kept_score, broke_score = service.get_score("kept", AS_OF), service.get_score("broke", AS_OF)

    assert kept_score.thin_file_reason is None and broke_score.thin_file_reason is None
    assert broke_score.score < kept_score.score
    assert broke_score.reasons[0].code == "SESAME_ORDER_DEFAULTED"
    assert "5 September 2005" in broke_score.reasons[0].message_en


def test_a_second_score_is_read_from_the_cache(service: ScoreService, ledger: FakeLedger) -> None:
    service.get_score("known", AS_OF)
    service.get_score("known", AS_OF)

    assert ledger.reads == 1


@pytest.mark.parametrize(
    ("consent", "reason"),
    [
        (ConsentState.NOT_GIVEN, error_reasons.CONSENT_MISSING),
        (ConsentState.WITHDRAWN, error_reasons.CONSENT_WITHDRAWN),
    ],
)
def test_a_user_without_consent_now_is_refused_whatever_the_as_of(
    service: ScoreService, ledger: FakeLedger, consent: ConsentState, reason: str
) -> None:
    ledger.consents["known"] = consent

    for as_of in (AS_OF, None):
        with pytest.raises(FailedPrecondition) as raised:
            service.get_score("known", as_of)
        assert raised.value.reason == reason


def test_a_refusal_is_not_cached_so_consent_granted_then_scores(
    service: ScoreService, ledger: FakeLedger
) -> None:
    ledger.consents["known"] = ConsentState.NOT_GIVEN
    with pytest.raises(FailedPrecondition):
        service.get_score("known", AS_OF)
    assert service.cached_score("known", AS_OF) is None

    ledger.consents["known"] = ConsentState.GRANTED

    assert service.get_score("known", AS_OF).score >= 350


def test_a_batch_refuses_the_users_without_consent_alone(
    service: ScoreService, ledger: FakeLedger
) -> None:
    ledger.consents["stranger"] = ConsentState.WITHDRAWN

    results = service.batch_get_scores(["known", "stranger"], AS_OF)

    assert results[0].score is not None
    assert results[1].score is None and isinstance(results[1].error, FailedPrecondition)
    assert results[1].error.reason == error_reasons.CONSENT_WITHDRAWN


def test_a_batch_reports_a_ledger_failure_per_user(
    service: ScoreService, ledger: FakeLedger
) -> None:
    ledger.down_for = {"unlucky"}

    results = service.batch_get_scores(["known", "unlucky", "stranger"], AS_OF)

    assert [result.error.reason if result.error else "" for result in results] == [
        "",
        "LEDGER_UNAVAILABLE",
        "",
    ]
    assert results[0].score is not None and results[0].score.score >= 350
    assert results[1].score is None


def test_a_batch_reports_a_bad_user_id_for_that_user_alone(service: ScoreService) -> None:
    results = service.batch_get_scores(["known", "", "tab\there"], AS_OF)

    assert results[0].score is not None
    errors = [result.error for result in results[1:]]
    assert [type(error) for error in errors] == [InvalidArgument, InvalidArgument]
    assert [error.reason for error in errors if error] == [
        error_reasons.FIELD_REQUIRED,
        error_reasons.ID_INVALID,
    ]
    assert [
        [violation.field for violation in error.field_violations] for error in errors if error
    ] == [["user_ids[1]"], ["user_ids[2]"]]


@pytest.mark.parametrize(
    ("user_count", "reason"),
    [(0, error_reasons.FIELD_REQUIRED), (1001, error_reasons.TOO_MANY_USERS)],
)
def test_a_batch_of_no_users_or_too_many_is_refused(
    service: ScoreService, user_count: int, reason: str
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        service.batch_get_scores([f"user-{index}" for index in range(user_count)], AS_OF)
    assert [(v.field, v.reason) for v in raised.value.field_violations] == [("user_ids", reason)]


def test_no_model_means_unavailable(ledger: FakeLedger) -> None:
    service = ScoreService(ledger, HistoryCache[CachedUser](), models_from(MODELS_ROOT))

    with pytest.raises(Unavailable) as raised:
        service.get_score("known", AS_OF)
    assert raised.value.reason == "MODEL_NOT_LOADED"


def test_every_non_finite_feature_value_is_refused_by_name(service: ScoreService) -> None:
    count = FEATURE_COUNT
    values = [*valid_row(), 1.0, 1.0, 1.0, *[float("nan")] * (count - 4), float("inf")]
    # NaN means missing, which only the features read against a credit line may be.
    may_be_missing = {count + FEATURE_NAMES.index(name) for name in FEATURES_READING_CREDIT_LINE}

    with pytest.raises(InvalidArgument) as raised:
        service.score_features(values, include_reasons=False)
    assert [violation.field for violation in raised.value.field_violations] == [
        f"feature_values[{index}]"
        for index in range(count + 3, 2 * count)
        if index not in may_be_missing or math.isinf(values[index])
    ]
    assert {violation.reason for violation in raised.value.field_violations} == {
        error_reasons.FEATURE_VALUE_NOT_FINITE
    }


@pytest.mark.parametrize(
    ("value_count", "reasons"),
    [
        (0, [error_reasons.FIELD_REQUIRED]),
        (FEATURE_COUNT - 1, [error_reasons.FEATURE_VALUES_NOT_WHOLE_ROWS]),
        (FEATURE_COUNT + 1, [error_reasons.FEATURE_VALUES_NOT_WHOLE_ROWS]),
        (FEATURE_COUNT * 100_001, [error_reasons.TOO_MANY_FEATURE_ROWS]),
        (
            FEATURE_COUNT * 100_001 + 1,
            [error_reasons.FEATURE_VALUES_NOT_WHOLE_ROWS, error_reasons.TOO_MANY_FEATURE_ROWS],
        ),
    ],
)
def test_values_that_are_no_whole_number_of_rows_or_too_many_are_refused(
    service: ScoreService, value_count: int, reasons: list[str]
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        service.score_features((valid_row() * 100_002)[:value_count], include_reasons=False)
    violations = raised.value.field_violations
    assert [(violation.field, violation.reason) for violation in violations] == [
        ("feature_values", reason) for reason in reasons
    ]


def test_a_row_without_a_credit_line_is_scored_with_the_line_features_missing(
    service: ScoreService,
) -> None:
    row = [0.0] * FEATURE_COUNT
    for index, name in enumerate(FEATURE_NAMES):
        if name in FEATURES_READING_CREDIT_LINE:
            row[index] = float("nan")

    scored = service.score_features(row, include_reasons=True)

    assert 350 <= scored.scores[0] <= 950


def test_a_bad_length_and_bad_values_are_refused_together(service: ScoreService) -> None:
    values = [*valid_row(), float("nan")]

    with pytest.raises(InvalidArgument) as raised:
        service.score_features(values, include_reasons=True)
    assert [violation.field for violation in raised.value.field_violations] == [
        "feature_values",
        f"feature_values[{FEATURE_COUNT}]",
    ]


def test_scores_without_reasons_equal_those_with_reasons(service: ScoreService) -> None:
    """The fast path (a log-odds-only graph, scores computed over arrays) changes nothing."""
    rows = valid_rows(np.random.default_rng(11), 2000)
    rows[::4] = np.round(rows[::4])  # whole numbers sit exactly on many split thresholds

    fast = service.score_features(rows.ravel(), include_reasons=False)
    full = service.score_features(rows.ravel(), include_reasons=True)

    assert fast.reasons is None and full.reasons is not None
    assert fast.scores.tolist() == full.scores.tolist()
    assert fast.probabilities_of_default.tolist() == full.probabilities_of_default.tolist()


def test_array_scores_round_and_clamp_as_the_scoring_rule_does() -> None:
    log_odds = np.concatenate(
        [
            np.linspace(-12, 12, 20_001),
            # exactly half a point either side of whole scores, and the clamping edges
            (scoring.OFFSET - np.arange(300, 1001) - 0.5) / scoring.FACTOR,
        ]
    )

    expected = [scoring.score_from_log_odds(float(value)) for value in log_odds]
    assert scores_from_log_odds(log_odds).tolist() == expected


def test_a_cached_user_is_scored_by_the_model_serving_now(
    ledger: FakeLedger, tmp_path: Path
) -> None:
    for version in ("1.0.0", "1.0.1"):
        shutil.copytree(newest_model_directory(MODELS_ROOT), tmp_path / version)
    models = models_from(tmp_path)
    models.load_initial("1.0.0")
    service = ScoreService(ledger, HistoryCache[CachedUser](), models)
    first = service.get_score("known", AS_OF)
    assert service.get_score("known", AS_OF) == first  # answered from the cache

    models.reload("swap", "1.0.1")
    after_swap = service.get_score("known", AS_OF)

    assert ledger.reads == 1  # the history was read once; only the model changed
    assert after_swap.model_version == "1.0.1"
    assert after_swap.score == first.score  # the same trees in both versions
