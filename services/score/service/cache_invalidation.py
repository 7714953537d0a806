"""Keeps the feature cache fresh from the ledger's entry stream (WatchEntries).

A daemon thread reads the stream and drops the cached values of every user an entry is about,
when the entry changes the user's credit history (a hold placed or released does not: the
waiver's orders would otherwise turn every next score of the user into a ledger read).
After a disconnect it resumes after the last global sequence it processed (the ledger delivers
at least once and never skips), waiting longer after each failed attempt up to a ceiling. The
first connection starts at sequence 0 so nothing written before the service started is missed;
an entry that cached values already reflect leaves them in place.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from services.score.service.ports import EntryStream

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 5.0


class CacheInvalidator:
    """Runs the stream consumer in a daemon thread until `stop`."""

    def __init__(
        self,
        stream: EntryStream,
        invalidate_user: Callable[[str, int], None],
        *,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
    ) -> None:
        self._stream = stream
        self._invalidate_user = invalidate_user
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cache-invalidation", daemon=True)
        self.last_global_sequence = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._stream.cancel_watch()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        backoff_s = self._backoff_initial_s
        while not self._stop.is_set():
            try:
                for notice in self._stream.watch_entries(self.last_global_sequence):
                    if self._stop.is_set():
                        return
                    if notice.changes_credit_history:
                        self._invalidate_user(notice.user_id, notice.global_sequence)
                    self.last_global_sequence = max(
                        self.last_global_sequence, notice.global_sequence
                    )
                    backoff_s = self._backoff_initial_s
            except Exception as error:  # any failure means: reconnect later
                if self._stop.is_set():
                    return  # the failure is the cancellation `stop` asked for
                log.warning(
                    "entry_stream_interrupted",
                    error_type=type(error).__name__,
                    resume_after=self.last_global_sequence,
                    retry_in_s=backoff_s,
                )
            # The stream ended or failed; resume after a pause that doubles up to the ceiling.
            if self._stop.wait(backoff_s):
                return
            backoff_s = min(backoff_s * 2, self._backoff_max_s)
