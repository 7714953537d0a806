"""What the score service needs from the outside, declared here and implemented in adapters/."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.score.domain.history import CreditHistory


@dataclass(frozen=True)
class LedgerHistory:
    """A user's credit history, the moment the ledger read it as of, and the global sequence of
    the user's newest entry it reflects (0 for a user without entries)."""

    history: CreditHistory
    data_as_of: datetime | None
    last_global_sequence: int = 0


class CreditHistorySource(Protocol):
    """Where credit histories come from (the ledger); raises `Unavailable` when it cannot say."""

    def get_credit_history(self, user_id: str, as_of: datetime | None) -> LedgerHistory: ...


class EntryStream(Protocol):
    """The ledger's entry stream: (global_sequence, user_id) after a sequence, as they come."""

    def watch_entries(self, after_global_sequence: int) -> Iterator[tuple[int, str]]: ...

    def cancel_watch(self) -> None:
        """Ends the stream being read, so a consumer blocked on it wakes up."""


class ModelChoice(Protocol):
    """The model version chosen last, shared by the worker processes of one service.

    A worker that swaps models publishes the version; the others read it and follow.
    """

    def publish(self, text: str) -> None: ...

    def read(self) -> tuple[int, str]:
        """(generation, model version); generation 0 means no swap was published yet."""
        ...
