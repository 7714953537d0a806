"""Keeps the feature cache fresh from the ledger's entry stream (WatchEntries).

A daemon thread reads the stream and drops the cached values of every user an entry is about,
when the entry changes the user's credit history (a hold placed or released does not: the
waiver's orders would otherwise turn every next score of the user into a ledger read).
After a disconnect it resumes after the last global sequence it processed (the ledger delivers
at least once and never skips), waiting longer after each failed attempt up to a ceiling. The
first connection starts at sequence 0 so nothing written before the service started is missed;
an entry that cached values already reflect leaves them in place.

The watch has a deadline of its own (five minutes, `services.score.adapters.ledger_client`), so
that a connection that died without a word is given up at the latest then. Reaching it is the
stream's planned end, not an interruption: the stream is resumed at once, after the last entry
processed, with nothing logged above debug level and nothing dropped from the cache. No entry
is lost across the renewal (the next watch starts where this one stopped) and none is delivered
twice, so the cache sees no burst of invalidations either.

A watch that had been running for `established_after_s` when it was cut is resumed at once too,
logged at info level: that is routine, not trouble (a ledger that ages its connections out,
`SESAME_LEDGER_MAX_CONNECTION_AGE_S`, ends the calls still on an old connection when its grace
period is over; a ledger replica is replaced). Only a watch that fails soon after it started is
an interruption worth a warning, and the pause before the next attempt grows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from services.score.service.ports import EntryStream

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 5.0
# A watch that has run this long was working: when it is cut, it is resumed at once.
ESTABLISHED_AFTER_S = 30.0


class CacheInvalidator:
    """Runs the stream consumer in a daemon thread until `stop`."""

    def __init__(
        self,
        stream: EntryStream,
        invalidate_user: Callable[[str, int], None],
        *,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        established_after_s: float = ESTABLISHED_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._invalidate_user = invalidate_user
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._established_after_s = established_after_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cache-invalidation", daemon=True)
        self.last_global_sequence = 0
        # How often the watch reached its deadline, was cut after it had been running and was
        # interrupted soon after it started: what the logs say, for tests and debuggers.
        self.renewals = 0
        self.resumptions = 0
        self.interruptions = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._stream.cancel_watch()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        backoff_s = self._backoff_initial_s
        while not self._stop.is_set():
            started_s = self._clock()
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
                if self._clock() - started_s >= self._established_after_s:
                    self.resumptions += 1
                    backoff_s = self._backoff_initial_s
                    log.info(
                        "entry_stream_resumed",
                        error_type=type(error).__name__,
                        resume_after=self.last_global_sequence,
                    )
                    continue
                self.interruptions += 1
                log.warning(
                    "entry_stream_interrupted",
                    error_type=type(error).__name__,
                    resume_after=self.last_global_sequence,
                    retry_in_s=backoff_s,
                )
                # Resume after a pause that doubles up to the ceiling.
                if self._stop.wait(backoff_s):
                    return
                backoff_s = min(backoff_s * 2, self._backoff_max_s)
                continue
            if self._stop.is_set():
                return
            # The watch reached its deadline: resume at once where it stopped.
            self.renewals += 1
            backoff_s = self._backoff_initial_s
            log.debug("entry_stream_renewed", resume_after=self.last_global_sequence)
