"""Following users' credit histories on the ledger's entry stream, to keep what was derived
from them fresh: the score service's cache of features and scores, the waiver's recent scores.

`LedgerHistoryStream` is the gRPC side: a WatchEntries call that asks the ledger for the entries
that change a credit history alone (`credit_history_only`; which those are is the ledger's
rule), and, when asked, says when it has caught up. `CacheInvalidator` reads it on a daemon
thread and calls `invalidate_user` for every entry, with its user and global sequence.

After a disconnect it resumes after the last global sequence it processed (the ledger delivers
at least once and never skips), waiting longer after each failed attempt up to a ceiling, or
after the point a watch said it had caught up to, if that is further. The first connection
starts at sequence 0 so nothing written before the service started is missed (an entry that
cached values already reflect leaves them in place), or, `start_from_now`, after the newest
entry when it begins, for a consumer that keeps nothing from before. A consumer that must know
how far behind the stream may be passes `on_caught_up` and `on_behind`: the first is called when
a watch has delivered everything committed before it began, the second whenever a watch ends,
so that between the two the consumer knows it may not have heard of every change yet.

The watch has a deadline of its own (five minutes), so that a connection that died without a
word is given up at the latest then. Reaching it is the stream's planned end, not an
interruption: the stream is resumed at once, after the last entry processed, with nothing logged
above debug level and nothing dropped from the cache. No entry is lost across the renewal (the
next watch starts where this one stopped) and none is delivered twice, so the cache sees no
burst of invalidations either.

A watch that had been running for `established_after_s` when it was cut is resumed at once too,
logged at info level: that is routine, not trouble (a ledger that ages its connections out,
`SESAME_LEDGER_MAX_CONNECTION_AGE_S`, ends the calls still on an old connection when its grace
period is over; a ledger replica is replaced). Only a watch that fails soon after it started is
an interruption worth a warning, and the pause before the next attempt grows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import grpc
import structlog
from sesame.ledger.v1 import ledger_service_pb2, ledger_service_pb2_grpc

from services.common.errors import Unavailable

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

LEDGER_UNAVAILABLE = "LEDGER_UNAVAILABLE"
# A watch is a long call; its deadline makes it end and resume now and then, so a connection
# that died silently is noticed within this time. Reaching it is the watch's planned end.
WATCH_DEADLINE_S_DEFAULT = 300.0
BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 5.0
# A watch that has run this long was working: when it is cut, it is resumed at once.
ESTABLISHED_AFTER_S = 30.0


@dataclass(frozen=True, slots=True)
class EntryNotice:
    """A ledger entry that changes its user's credit history: where it is in the journal and
    whose it is."""

    global_sequence: int
    user_id: str


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """The watch has delivered every entry up to `global_sequence`, the newest committed when
    it began."""

    global_sequence: int


class EntryStream(Protocol):
    """The ledger's entries that change credit histories, after a sequence (None: after the
    newest when the watch begins), as they come."""

    def watch_entries(self, after_global_sequence: int | None) -> Iterator[EntryNotice | CaughtUp]:
        """Ends (without an error) when the watch has lasted as long as it was meant to, which
        is the consumer's cue to resume at once; raises when it was interrupted."""
        ...

    def cancel_watch(self) -> None:
        """Ends the stream being read, so a consumer blocked on it wakes up."""


class LedgerHistoryStream:
    """WatchEntries with `credit_history_only` on one ledger channel; `report_caught_up` asks
    the ledger to say when a watch has caught up."""

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        report_caught_up: bool = False,
        watch_deadline_s: float = WATCH_DEADLINE_S_DEFAULT,
    ) -> None:
        self._stub = ledger_service_pb2_grpc.LedgerServiceStub(channel)
        self._report_caught_up = report_caught_up
        self._watch_deadline_s = watch_deadline_s
        self._watch_lock = threading.Lock()
        self._watch_call: grpc.RpcContext | None = None

    def watch_entries(self, after_global_sequence: int | None) -> Iterator[EntryNotice | CaughtUp]:
        """Every entry after the given sequence (None: from now), as they come, until the
        watch's deadline: the iterator then ends. Any other end (the ledger gone, shutting down,
        the call cancelled) raises."""
        request = ledger_service_pb2.WatchEntriesRequest(
            after_global_sequence=after_global_sequence or 0,
            credit_history_only=True,
            report_caught_up=self._report_caught_up,
            from_now=after_global_sequence is None,
        )
        call = self._stub.WatchEntries(request, timeout=self._watch_deadline_s)
        with self._watch_lock:
            self._watch_call = call
        try:
            for response in call:
                if response.HasField("caught_up"):
                    yield CaughtUp(response.caught_up.global_sequence)
                else:
                    yield EntryNotice(response.entry.global_sequence, response.entry.user_id)
        except grpc.RpcError as error:
            if isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return  # the watch's own deadline: its planned end
            raise
        finally:
            with self._watch_lock:
                self._watch_call = None
        # The ledger never ends a watch with OK; should it, the consumer must not take it for
        # the planned end and resume in a tight loop.
        raise Unavailable("the ledger ended the entry stream", reason=LEDGER_UNAVAILABLE)

    def cancel_watch(self) -> None:
        with self._watch_lock:
            if self._watch_call is not None:
                self._watch_call.cancel()


def _nothing() -> None:
    pass


class CacheInvalidator:
    """Runs the stream consumer in a daemon thread until `stop`."""

    def __init__(
        self,
        stream: EntryStream,
        invalidate_user: Callable[[str, int], None],
        *,
        on_caught_up: Callable[[], None] = _nothing,
        on_behind: Callable[[], None] = _nothing,
        start_from_now: bool = False,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        established_after_s: float = ESTABLISHED_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._invalidate_user = invalidate_user
        self._on_caught_up = on_caught_up
        self._on_behind = on_behind
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._established_after_s = established_after_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cache-invalidation", daemon=True)
        # Where the next watch starts: after this sequence; None (`start_from_now`, until the
        # first watch says where it began) from the newest entry when it begins.
        self.last_global_sequence: int | None = None if start_from_now else 0
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
                    self.last_global_sequence = max(
                        self.last_global_sequence or 0, notice.global_sequence
                    )
                    if isinstance(notice, CaughtUp):
                        self._on_caught_up()
                    else:
                        self._invalidate_user(notice.user_id, notice.global_sequence)
                    backoff_s = self._backoff_initial_s
            except Exception as error:  # any failure means: reconnect later
                self._on_behind()
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
            self._on_behind()
            if self._stop.is_set():
                return
            # The watch reached its deadline: resume at once where it stopped.
            self.renewals += 1
            backoff_s = self._backoff_initial_s
            log.debug("entry_stream_renewed", resume_after=self.last_global_sequence)
