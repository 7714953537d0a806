"""A data-set row, taken through the replay tool's conversion into the ledger's credit history and
the serving adapter, gives features that agree with the row's raw columns."""

from __future__ import annotations

import csv
import gzip
import itertools
import math
from pathlib import Path

import pytest
from sesame.ledger.v1 import ledger_service_pb2

from services.datasets import taiwan
from services.score.adapters.ledger_history import credit_history_from_proto
from services.score.domain.features import FEATURE_NAMES, compute_features, feature_dict
from services.score.training.dataset import history_for_row

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
SAMPLE_CSV = REPOSITORY_ROOT / "tests" / "fixtures" / "taiwan_sample.csv"
TRAINING_CSV = REPOSITORY_ROOT / "data" / "taiwan-credit" / "train.csv.gz"
TRAINING_ROWS_CHECKED = 400

PAY = ("PAY_0", "PAY_2", "PAY_3", "PAY_4", "PAY_5", "PAY_6")
BILL = tuple(f"BILL_AMT{month}" for month in range(1, 7))
PAID = tuple(f"PAY_AMT{month}" for month in range(1, 7))


def raw_rows(path: Path, limit: int) -> list[dict[str, int]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="") as text:
        return [
            {column: int(value) for column, value in row.items()}
            for row in itertools.islice(csv.DictReader(text), limit)
        ]


def features_of(path: Path, limit: int) -> dict[int, dict[str, float]]:
    return {
        row.client_id: feature_dict(compute_features(history_for_row(row)))
        for row in itertools.islice(taiwan.read_rows(path), limit)
    }


def expected_from_raw(raw: dict[str, int]) -> dict[str, float]:
    """The features computed straight from the columns, independently of the production code."""
    line = raw["LIMIT_BAL"]
    late = [max(raw[column], 0) for column in PAY]
    bills = [raw[column] for column in BILL]
    paid = [raw[column] for column in PAID]

    def paid_share(month: int) -> float:
        owed = bills[month + 1]
        return 1.0 if owed <= 0 else min(paid[month] / owed, 1.0)

    owed_total = sum(max(bill, 0) for bill in bills[1:])
    return {
        "months_late_latest": late[0],
        "months_late_previous": late[1],
        "months_late_worst": max(late),
        "months_late_total": sum(late),
        "late_statement_count": sum(1 for months in late if months > 0),
        "months_since_late": next((index for index, months in enumerate(late) if months), 6),
        "credit_line": line * 100,
        "utilisation_latest": max(bills[0], 0) / line,
        "utilisation_mean": sum(max(bill, 0) for bill in bills) / 6 / line,
        "utilisation_max": max(max(bill, 0) for bill in bills) / line,
        "payment_ratio_latest": paid_share(0),
        "payment_ratio_previous": paid_share(1),
        "payment_ratio_overall": 1.0 if owed_total <= 0 else min(sum(paid[:5]) / owed_total, 1.0),
        "payment_ratio_lowest": min(paid_share(month) for month in range(5)),
        "months_paid_in_full": sum(1 for month in range(5) if paid_share(month) >= 1.0),
        "partner_payment_latest": paid[0] * 100,
        "partner_payments_mean": sum(paid) * 100 / 6,
        "months_paid_nothing": sum(
            1 for month in range(5) if bills[month + 1] > 0 and paid[month] == 0
        ),
    }


@pytest.mark.parametrize(
    ("path", "limit"), [(SAMPLE_CSV, 100), (TRAINING_CSV, TRAINING_ROWS_CHECKED)]
)
def test_features_agree_with_the_raw_columns(path: Path, limit: int) -> None:
    computed = features_of(path, limit)
    rows = raw_rows(path, limit)
    assert len(rows) == len(computed) > 0

    for raw in rows:
        expected = expected_from_raw(raw)
        actual = computed[raw["ID"]]
        assert list(actual) == list(FEATURE_NAMES)
        for name in FEATURE_NAMES:
            assert actual[name] == pytest.approx(expected[name], rel=1e-12, abs=1e-12), (
                raw["ID"],
                name,
            )


def test_named_examples_from_the_sample() -> None:
    features = features_of(SAMPLE_CSV, 100)

    # ID 1: PAY_0 = 2, PAY_2 = 2, then paid in full and no use; BILL_AMT1 3913 of 20000.
    assert features[1]["months_late_latest"] == 2
    assert features[1]["late_statement_count"] == 2
    assert features[1]["months_since_late"] == 0
    assert features[1]["utilisation_latest"] == 3913 / 20000
    # ID 650 was 8 months late, the data set's worst.
    assert features[650]["months_late_worst"] == 8
    # ID 4 revolved every month and was never late.
    assert features[4]["months_late_worst"] == 0
    assert features[4]["months_since_late"] == 6


def test_the_history_used_in_training_is_the_one_the_ledger_returns_after_a_replay() -> None:
    for row in taiwan.read_rows(SAMPLE_CSV):
        report = taiwan.to_partner_report(row)
        # What GetCreditHistory returns for the replayed user: the reported credit line and
        # statements, newest first, as of the end of the last reported month.
        ledger_answer = ledger_service_pb2.GetCreditHistoryResponse(
            user_id=report.user_id,
            credit_line=report.credit_line,
            statements=sorted(
                report.statements,
                key=lambda statement: (statement.period.year, statement.period.month),
                reverse=True,
            ),
        )
        ledger_answer.as_of_time.FromDatetime(taiwan.STATEMENTS_AS_OF)

        assert credit_history_from_proto(ledger_answer) == history_for_row(row)


def test_protected_attributes_change_no_feature(tmp_path: Path) -> None:
    rows = raw_rows(SAMPLE_CSV, 100)
    changed = tmp_path / "changed.csv"
    with changed.open("w", newline="") as text:
        writer = csv.DictWriter(text, fieldnames=list(rows[0]))
        writer.writeheader()
        for raw in rows:
            writer.writerow(
                raw | {"SEX": 3 - raw["SEX"], "AGE": raw["AGE"] + 30, "EDUCATION": 1, "MARRIAGE": 2}
            )

    assert features_of(changed, 100) == features_of(SAMPLE_CSV, 100)


def test_every_feature_of_the_training_rows_is_finite() -> None:
    for values in features_of(TRAINING_CSV, TRAINING_ROWS_CHECKED).values():
        assert all(math.isfinite(value) for value in values.values())
