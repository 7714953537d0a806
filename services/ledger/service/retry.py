"""Reruns a transaction that lost a race the database could not order for us."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from services.common.errors import Unavailable
from services.ledger.domain import reasons
from services.ledger.service.ports import StorageConflict

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

ResultT = TypeVar("ResultT")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a transaction is run again, with full-jitter exponential backoff."""

    attempts: int = 5
    backoff_initial_s: float = 0.002
    backoff_max_s: float = 0.1

    def pause(self, attempt: int) -> None:
        ceiling_s = min(self.backoff_max_s, self.backoff_initial_s * 2**attempt)
        time.sleep(random.uniform(0, ceiling_s))


def with_retries(policy: RetryPolicy, attempt: Callable[[], ResultT]) -> ResultT:
    """Runs `attempt` until it does not raise StorageConflict, at most `policy.attempts` times;
    then fails with UNAVAILABLE, which clients retry (with the same request id)."""
    for attempt_number in range(policy.attempts):
        try:
            return attempt()
        except StorageConflict:
            log.info("transaction_retried", attempt=attempt_number + 1)
            if attempt_number + 1 < policy.attempts:
                policy.pause(attempt_number)
    raise Unavailable(
        "the ledger is too busy right now; retry with the same request_id",
        reason=reasons.STORAGE_CONTENDED,
    )
