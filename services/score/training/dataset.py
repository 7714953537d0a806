"""Rows of the Taiwan data set as the model sees them: through the ledger's contract.

Each row goes through the replay tool's conversion (`services.datasets.taiwan`) into the
GetCreditHistory answer the ledger gives for the replayed user, then through the serving adapter
(`credit_history_from_proto`) and the one feature function (`compute_features`). The protected
attributes are read from the file separately, by client id, for the fairness audit only.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from services.datasets import taiwan
from services.score.adapters.ledger_history import credit_history_from_proto
from services.score.adapters.model_files import REPOSITORY_ROOT
from services.score.domain.features import FEATURE_COUNT, compute_features
from services.score.domain.history import CreditHistory

TRAINING_DATA = REPOSITORY_ROOT / "data" / "taiwan-credit" / "train.csv.gz"
# The data set's own README gives this hash for train.csv; the committed copy must match it.
TRAINING_DATA_SHA256 = "d8908ef6a79996278f979bd7cb20aafe38b8f1da56141fc24f8ab7ea69f24be6"
READ_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class LabelledFeatures:
    """Feature rows in file order, with their client ids and labels (1 = defaulted), and the
    same rows with the credit line withheld (what a history without a partner's line gives)."""

    client_ids: NDArray[np.int64]
    features: NDArray[np.float64]
    labels: NDArray[np.int64]
    features_without_credit_line: NDArray[np.float64]

    def __post_init__(self) -> None:
        row_count = len(self.client_ids)
        assert self.features.shape == (row_count, FEATURE_COUNT)
        assert self.features_without_credit_line.shape == (row_count, FEATURE_COUNT)
        assert self.labels.shape == (row_count,)
        assert not np.isnan(self.features).any(), "every row of the data set has a credit line"


@dataclass(frozen=True)
class ProtectedGroups:
    """Each client's sex, education and marriage codes and age, aligned with a
    `LabelledFeatures`; for fairness only."""

    sex: NDArray[np.int64]
    age: NDArray[np.int64]
    education: NDArray[np.int64]
    marriage: NDArray[np.int64]


def history_for_row(row: taiwan.TaiwanRow) -> CreditHistory:
    """The history the score service would read for the replayed client of a data-set row."""
    return credit_history_from_proto(taiwan.to_credit_history(row))


def without_credit_line(history: CreditHistory) -> CreditHistory:
    """The history as the ledger would give it had no partner reported a credit line."""
    return dataclasses.replace(history, credit_line_minor=None)


def load_labelled_features(path: Path, *, progress: bool = False) -> LabelledFeatures:
    """Every row of a data-set file (``.csv`` or ``.csv.gz``) as features, in file order, with
    and without its credit line."""
    client_ids: list[int] = []
    feature_rows: list[tuple[float, ...]] = []
    rows_without_line: list[tuple[float, ...]] = []
    labels: list[int] = []
    rows = taiwan.read_rows(path)
    for row in tqdm(rows, desc="features", unit=" rows", disable=not progress, leave=False):
        history = history_for_row(row)
        client_ids.append(row.client_id)
        feature_rows.append(compute_features(history))
        rows_without_line.append(compute_features(without_credit_line(history)))
        labels.append(int(row.defaulted_next_month))
    return LabelledFeatures(
        client_ids=np.array(client_ids, dtype=np.int64),
        features=_matrix(feature_rows),
        labels=np.array(labels, dtype=np.int64),
        features_without_credit_line=_matrix(rows_without_line),
    )


def _matrix(rows: list[tuple[float, ...]]) -> NDArray[np.float64]:
    return np.array(rows, dtype=np.float64).reshape(len(rows), FEATURE_COUNT)


def load_protected_groups(path: Path, client_ids: NDArray[np.int64]) -> ProtectedGroups:
    """The protected attributes of the given clients, read apart from the features."""
    by_client = {
        attributes.client_id: attributes for attributes in taiwan.read_protected_attributes(path)
    }
    return ProtectedGroups(
        sex=np.array([by_client[int(client)].sex for client in client_ids], dtype=np.int64),
        age=np.array([by_client[int(client)].age for client in client_ids], dtype=np.int64),
        education=np.array(
            [by_client[int(client)].education for client in client_ids], dtype=np.int64
        ),
        marriage=np.array(
            [by_client[int(client)].marriage for client in client_ids], dtype=np.int64
        ),
    )


def csv_sha256(path: Path) -> str:
    """The sha256 of a data-set file's CSV text (decompressed first when it is ``.gz``)."""
    digest = hashlib.sha256()
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as data:
        while chunk := data.read(READ_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
