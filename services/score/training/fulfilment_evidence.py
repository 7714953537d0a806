"""The model card's evidence on Sesame's own record: the obligations the training data never had.

Two checks, both through the one feature function:

* on training histories, a Sesame obligation added in a month of the window (paid on time, paid
  late, still unpaid, defaulted) must move the risk the right way: never up when it was paid on
  time, never down otherwise, and never less for a worse outcome than for a better one;
* worked examples of histories whose whole record is Sesame's own, scored by the exported graph
  as the service scores them (thin-file rule, score, probability, reasons).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import onnxruntime

from services.datasets import taiwan
from services.score.adapters.model_files import run_model
from services.score.domain import features as feature_definition, fulfilment, scoring
from services.score.domain.history import (
    CreditHistory,
    MonthPeriod,
    ObligationOutcome,
    ObligationRecord,
)
from services.score.domain.reasons import principal_reasons
from services.score.domain.thin_file import thin_file_reason
from services.score.training import dataset, evidence

# Every how many training rows the check adds obligations to, and the months (0 = the newest of
# the window) it adds them in.
ROW_STRIDE = 4
OBLIGATION_MONTHS = (0, 2, 5)
# A 99-yuan deposit's worth, in the minor units of the history.
OBLIGATION_AMOUNT_MINOR = 99_00
# The outcomes added: (name, outcome, days late, paid). An obligation still unpaid is late by
# however long it has been unpaid at as_of, which depends on the month it was due.
_OUTCOMES: tuple[tuple[str, ObligationOutcome, int, bool], ...] = (
    ("on time", ObligationOutcome.ON_TIME, 0, True),
    ("10 days late", ObligationOutcome.LATE, 10, True),
    ("45 days late", ObligationOutcome.LATE, 45, True),
    ("still unpaid", ObligationOutcome.OPEN, 0, False),
    ("defaulted", ObligationOutcome.DEFAULTED, 0, False),
)
# Pairs of outcomes (indexes into _OUTCOMES) where the second is always the worse promise.
_WORSE_THAN: tuple[tuple[int, int], ...] = ((0, 1), (1, 2), (2, 4), (0, 3), (3, 4))
# Worked examples: a 3-yuan bike fee due on the 5th of each month of 2025.
EXAMPLE_FEE_MINOR = 300
EXAMPLE_YEAR = 2025


def obligation_monotonicity(data_path: Path, booster: lightgbm.Booster) -> dict[str, Any]:
    """Adds one obligation of each outcome to every `ROW_STRIDE`th training history (with its
    credit line and without it), in each of `OBLIGATION_MONTHS`, and counts the variants whose
    risk moved the wrong way."""
    base_rows: list[tuple[float, ...]] = []
    variant_rows: list[list[tuple[float, ...]]] = [[] for _ in _OUTCOMES]
    for index, row in enumerate(taiwan.read_rows(data_path)):
        if index % ROW_STRIDE:
            continue
        history = dataset.history_for_row(row)
        for variant_base in (history, dataset.without_credit_line(history)):
            for month_index in OBLIGATION_MONTHS:
                base_rows.append(feature_definition.compute_features(variant_base))
                for outcome_index, outcome in enumerate(_OUTCOMES):
                    changed = _with_obligation(variant_base, month_index, *outcome[1:])
                    variant_rows[outcome_index].append(feature_definition.compute_features(changed))
    base = np.asarray(booster.predict(np.array(base_rows), raw_score=True))
    by_outcome = [
        np.asarray(booster.predict(np.array(rows), raw_score=True)) for rows in variant_rows
    ]
    on_time, adverse = by_outcome[0], by_outcome[1:]
    order_violations = sum(
        int(np.sum(by_outcome[worse] < by_outcome[better])) for better, worse in _WORSE_THAN
    )
    base_scores = evidence.scores_from_log_odds(base)
    return {
        "variants": len(base_rows) * len(_OUTCOMES),
        "built_from": (
            f"every {ROW_STRIDE}th training row, with its credit line and without it, with one "
            f"obligation of {OBLIGATION_AMOUNT_MINOR} minor units added, due in month "
            + ", ".join(str(month) for month in OBLIGATION_MONTHS)
            + " of the window (0 the newest), for each outcome: "
            + ", ".join(name for name, *_ in _OUTCOMES)
            + "; a worse outcome is compared with a better one where it is always worse: "
            + ", ".join(
                f"{_OUTCOMES[worse][0]} with {_OUTCOMES[better][0]}"
                for better, worse in _WORSE_THAN
            )
        ),
        "on_time_variants_with_higher_risk": int(np.sum(on_time > base)),
        "late_unpaid_or_defaulted_variants_with_lower_risk": int(
            sum(np.sum(log_odds < base) for log_odds in adverse)
        ),
        "worse_outcome_with_lower_risk_than_better": order_violations,
        "mean_score_change": {
            name: float((evidence.scores_from_log_odds(log_odds) - base_scores).mean())
            for (name, *_), log_odds in zip(_OUTCOMES, by_outcome, strict=True)
        },
    }


def _with_obligation(
    history: CreditHistory, month_index: int, outcome: ObligationOutcome, days_late: int, paid: bool
) -> CreditHistory:
    due_month = _months_before(history, month_index)
    obligation = ObligationRecord(
        amount_due_minor=OBLIGATION_AMOUNT_MINOR,
        amount_paid_minor=OBLIGATION_AMOUNT_MINOR if paid else 0,
        due_at=datetime(due_month[0], due_month[1], 15, tzinfo=UTC),
        outcome=outcome,
        days_late=days_late,
    )
    return replace(history, obligations=(obligation, *history.obligations))


def _months_before(history: CreditHistory, month_index: int) -> tuple[int, int]:
    assert history.as_of is not None
    period = MonthPeriod.last_ended_by(history.as_of)
    for _ in range(month_index):
        period = period.previous()
    return period.year, period.month


@dataclass(frozen=True)
class _Example:
    description: str
    as_of: datetime
    # (month due, outcome, days late, paid), oldest first.
    obligations: tuple[tuple[int, ObligationOutcome, int, bool], ...]


_ON_TIME = (ObligationOutcome.ON_TIME, 0, True)
_EXAMPLES: tuple[_Example, ...] = (
    _Example("one fee paid on time", datetime(EXAMPLE_YEAR, 2, 1, tzinfo=UTC), ((1, *_ON_TIME),)),
    _Example(
        "two monthly fees paid on time",
        datetime(EXAMPLE_YEAR, 3, 1, tzinfo=UTC),
        ((1, *_ON_TIME), (2, *_ON_TIME)),
    ),
    _Example(
        "three monthly fees paid on time",
        datetime(EXAMPLE_YEAR, 4, 1, tzinfo=UTC),
        ((1, *_ON_TIME), (2, *_ON_TIME), (3, *_ON_TIME)),
    ),
    _Example(
        "three on time, then a fourth month paid on time",
        datetime(EXAMPLE_YEAR, 5, 1, tzinfo=UTC),
        ((1, *_ON_TIME), (2, *_ON_TIME), (3, *_ON_TIME), (4, *_ON_TIME)),
    ),
    _Example(
        "three on time, then the fourth paid 10 days late",
        datetime(EXAMPLE_YEAR, 5, 1, tzinfo=UTC),
        ((1, *_ON_TIME), (2, *_ON_TIME), (3, *_ON_TIME), (4, ObligationOutcome.LATE, 10, True)),
    ),
    _Example(
        "three on time, then the fourth still unpaid",
        datetime(EXAMPLE_YEAR, 5, 1, tzinfo=UTC),
        ((1, *_ON_TIME), (2, *_ON_TIME), (3, *_ON_TIME), (4, ObligationOutcome.OPEN, 0, False)),
    ),
    _Example(
        "three on time, then the fourth defaulted",
        datetime(EXAMPLE_YEAR, 5, 1, tzinfo=UTC),
        (
            (1, *_ON_TIME),
            (2, *_ON_TIME),
            (3, *_ON_TIME),
            (4, ObligationOutcome.DEFAULTED, 0, False),
        ),
    ),
    _Example(
        "a first fee defaulted",
        datetime(EXAMPLE_YEAR, 2, 1, tzinfo=UTC),
        ((1, ObligationOutcome.DEFAULTED, 0, False),),
    ),
)


def worked_examples(session: onnxruntime.InferenceSession) -> list[dict[str, Any]]:
    """Histories whose whole record is Sesame's own (a 3-yuan fee due on the 5th of a month),
    scored as the service scores them."""
    return [_worked_example(session, example) for example in _EXAMPLES]


def _worked_example(session: onnxruntime.InferenceSession, example: _Example) -> dict[str, Any]:
    history = CreditHistory(
        credit_line_minor=None,
        statements=(),
        obligations=tuple(
            ObligationRecord(
                amount_due_minor=EXAMPLE_FEE_MINOR,
                amount_paid_minor=EXAMPLE_FEE_MINOR if paid else 0,
                due_at=datetime(EXAMPLE_YEAR, month, 5, tzinfo=UTC),
                outcome=outcome,
                days_late=days_late,
            )
            for month, outcome, days_late, paid in reversed(example.obligations)
        ),
        as_of=example.as_of,
    )
    described: dict[str, Any] = {
        "history": example.description,
        "as_of": example.as_of.date().isoformat(),
    }
    reason = thin_file_reason(history)
    if reason is not None:
        return {**described, "thin_file": reason.value}
    values = feature_definition.compute_features(history)
    outputs = run_model(session, np.array([values]))
    log_odds = float(outputs.log_odds_of_default[0])
    reasons = principal_reasons(
        values, outputs.contributions[0].tolist(), feature_definition.sesame_record(history)
    )
    return {
        **described,
        "score": scoring.score_from_log_odds(log_odds),
        "probability_of_default": scoring.probability_from_log_odds(log_odds),
        "reasons": [reason.message_en for reason in reasons],
    }


def card_section(
    *, training_months_late_max: int, examples: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The card's account of how Sesame's obligations enter the features, and the examples."""
    if training_months_late_max != fulfilment.DEFAULT_MONTHS_LATE:
        raise AssertionError(
            f"a default counts as {fulfilment.DEFAULT_MONTHS_LATE} months late, the worst the "
            f"training data should hold, but it holds {training_months_late_max}"
        )
    return {
        "mapping": (
            "each obligation counts in the UTC month it was due (when that month is in the "
            "window), on the footing of a partner statement of that month: paid on time, 0 "
            "months late, its amount billed in the month before and paid in the due month; "
            f"paid late by N days, N/{fulfilment.DAYS_PER_MONTH_LATE} rounded up months late "
            f"(at most {fulfilment.DEFAULT_MONTHS_LATE}), billed and not paid; still unpaid D "
            "days after its due time at as_of, the same as late by D days; defaulted, "
            f"{fulfilment.DEFAULT_MONTHS_LATE} months late, billed and not paid. A statement of "
            "the same month keeps the larger months late; obligation amounts count in the "
            "payment features only, never against the credit line. See the README's table and "
            "services/score/domain/fulfilment.py"
        ),
        "default_months_late": fulfilment.DEFAULT_MONTHS_LATE,
        "training_data_months_late_max": training_months_late_max,
        "assumption": (
            "an obligation's outcome says about a person what a card statement's repayment "
            "status of the same lateness says; see the limitations"
        ),
        "worked_examples": list(examples),
    }
