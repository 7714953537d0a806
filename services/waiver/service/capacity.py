"""Keeps each user's waiver capacity in the ledger in step with the score band.

The waiver remembers, per user, the band it last set and how many changes it has made; a band
change is numbered, recorded, then sent to the ledger under a request id derived from the user,
the model version, the band and that number, and marked applied. A change cut short is sent again
under the same request id, so the ledger journals every change once.
"""

from __future__ import annotations

import structlog

from services.common.deadline import Deadline
from services.waiver.domain.capacity import capacity_for, capacity_request_id
from services.waiver.domain.decision import ScoreView
from services.waiver.service.ports import CapacityRecord, Ledger, OrderConflict, WaiverStorage

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()


class CapacityKeeper:
    def __init__(self, storage: WaiverStorage, ledger: Ledger, unit_minor: int) -> None:
        self._storage = storage
        self._ledger = ledger
        self._unit_minor = unit_minor

    def ensure(
        self,
        user_id: str,
        score: ScoreView | None,
        deadline: Deadline,
        recorded: CapacityRecord | None,
    ) -> int:
        """The user's capacity for the score, set in the ledger first if it changed; without a
        score the capacity last set stands (or nothing, for a user never scored). `recorded` is
        the user's capacity record as the caller read it."""
        if score is None:
            return recorded.capacity_minor if recorded is not None and recorded.applied else 0
        wanted = capacity_for(score.score, self._unit_minor)
        if recorded is not None and (recorded.band, recorded.capacity_minor) == (
            wanted.band,
            wanted.capacity_minor,
        ):
            if not recorded.applied:
                self._apply(recorded, deadline)
            return recorded.capacity_minor
        change = CapacityRecord(
            user_id,
            wanted.band,
            score.model_version,
            wanted.capacity_minor,
            change_number=1 if recorded is None else recorded.change_number + 1,
            applied=False,
        )
        try:
            with self._storage.transaction() as transaction:
                transaction.save_capacity(change, recorded)
        except OrderConflict:
            # A concurrent order of the same user recorded a change first; use it.
            with self._storage.transaction() as transaction:
                current = transaction.get_capacity(user_id)
            return self.ensure(user_id, score, deadline, current)
        self._apply(change, deadline)
        return change.capacity_minor

    def _apply(self, change: CapacityRecord, deadline: Deadline) -> None:
        request_id = capacity_request_id(
            change.user_id, change.model_version, change.band, change.change_number
        )
        self._ledger.set_waiver_capacity(
            request_id,
            change.user_id,
            change.capacity_minor,
            f"score band {change.band} (model {change.model_version})",
            deadline,
        )
        applied = CapacityRecord(**{**change.__dict__, "applied": True})
        try:
            with self._storage.transaction() as transaction:
                transaction.save_capacity(applied, change)
        except OrderConflict:
            pass  # a newer change was recorded meanwhile; it is applied on its own
        log.info("waiver_capacity_set", band=change.band, change_number=change.change_number)
