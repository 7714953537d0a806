"""The background task that journals the expiry of holds past their expiry time."""

from __future__ import annotations

from services.common.periodic import PeriodicTask
from services.ledger.service.ledger_service import LedgerService

# Rounds per tick are bounded so that a huge backlog cannot keep the thread from noticing a stop.
ROUNDS_PER_TICK_MAX = 10


class ExpirySweeper:
    """Calls `sweep_expired_holds` every interval on a daemon thread until stopped."""

    def __init__(self, service: LedgerService, interval_s: float, max_holds: int) -> None:
        assert max_holds > 0
        self._service = service
        self._max_holds = max_holds
        self._task = PeriodicTask("expiry-sweeper", interval_s, self.sweep_once)

    def start(self) -> None:
        self._task.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._task.stop(timeout_s)

    def sweep_once(self) -> int:
        """Expires holds until none are left or the round limit is reached; the count expired."""
        expired_count = 0
        for _ in range(ROUNDS_PER_TICK_MAX):
            if self._task.stopping:
                break
            result = self._service.sweep_expired_holds(self._max_holds)
            expired_count += result.expired_count
            if not result.more_remaining:
                break
        return expired_count
