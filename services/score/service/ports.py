"""What the score service needs from the outside, declared here and implemented in adapters/."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from services.score.domain.consent import ConsentState
from services.score.domain.history import CreditHistory


@dataclass(frozen=True)
class LedgerHistory:
    """A user's credit history, the moment the ledger read it as of, the global sequence of the
    user's newest entry it reflects (0 for a user without entries), and the user's consent to be
    scored as it stands now (whatever the history's as_of)."""

    history: CreditHistory
    data_as_of: datetime | None
    last_global_sequence: int = 0
    consent: ConsentState = ConsentState.NOT_GIVEN


class CreditHistorySource(Protocol):
    """Where credit histories come from (the ledger); raises `Unavailable` when it cannot say."""

    def get_credit_history(self, user_id: str, as_of: datetime | None) -> LedgerHistory: ...


class ModelChoice(Protocol):
    """The model version chosen last, shared by the worker processes of one service.

    A worker that swaps models publishes the version; the others read it and follow.
    """

    def publish(self, text: str) -> None: ...

    def read(self) -> tuple[int, str]:
        """(generation, model version); generation 0 means no swap was published yet."""
        ...


# ----------------------------------------------------------------------------------------------
# Models: what scoring asks of a model, whatever runs it (see domain/model_contract.py for the
# promise every model keeps).


@dataclass(frozen=True)
class ModelOutputs:
    """A model's outputs for N rows, flattened where they are one column."""

    probability_of_default: NDArray[np.float64]
    log_odds_of_default: NDArray[np.float64]
    # [N, FEATURE_COUNT]: each feature's share of the log-odds.
    contributions: NDArray[np.float64]
    # The part of the log-odds no feature explains: bias + sum(contributions) == log-odds.
    bias: NDArray[np.float64]


class Model(Protocol):
    """One loaded model, immutable: swapping models means loading another one.

    Rows are float64 arrays of shape [N, FEATURE_COUNT], columns in FEATURE_NAMES order.
    """

    @property
    def version(self) -> str: ...

    @property
    def model_card_json(self) -> str: ...

    @property
    def loaded_at(self) -> datetime:
        """When this model was loaded; it tells apart two loads of the same version."""
        ...

    @property
    def feature_names(self) -> tuple[str, ...]: ...

    def score_rows(self, rows: NDArray[np.float64]) -> ModelOutputs:
        """Every output for the rows: probabilities, log-odds, contributions and bias."""
        ...

    def probabilities_and_log_odds(
        self, rows: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Probability and log-odds of default alone, exactly as `score_rows` gives them: what
        scores without reasons need, which a model may compute with less work."""
        ...


class ModelRejectedError(ValueError):
    """The model cannot serve: missing, corrupt, breaking the model contract or its warm-up."""


class ModelVersionNotFoundError(LookupError):
    """No model has the version asked for."""


class ModelLoader(Protocol):
    """Where models come from (model files under a directory, in production)."""

    def newest_version(self) -> str | None:
        """The newest version available, or None when there is none."""
        ...

    def load(self, model_version: str) -> Model:
        """The model of that version, loaded and ready to run rows.

        Raises `ModelVersionNotFoundError` when there is no such version and
        `ModelRejectedError` when it cannot be loaded or breaks the model contract.
        """
        ...
