"""Group commit: concurrent write requests share one transaction.

Why: every write ends by allocating global sequences from the journal head row and keeps that
row locked until it commits, so that commits happen in sequence order (WatchEntries relies on
it). With one request per transaction, writes would queue behind each other's commit, an fsync
each, and the ledger could never commit faster than the disk syncs. A batch of N requests pays
for the lock and the fsync once.

How: a request that finds no batch running leads one: it takes the queued requests (up to a
weight limit), runs them in one transaction and hands out their outcomes; the next queued
request then leads the following batch. A request alone runs at once, in its own thread.
Requests in a batch run in arrival order, each seeing the effects of those before it, exactly as
if each had its own transaction; a request id that appears twice waits for the next batch, where
it finds the first one's stored answer.

Every request taken into a batch leaves it with an outcome or back in the queue, whatever the
leader's run raised: a request the run left without an answer fails with UNAVAILABLE
(STORAGE_CONTENDED), which clients retry with the same request id. No request waits for ever:
past `wait_timeout_s` it leaves the queue (or stops waiting for the batch that holds it) and
fails the same way.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from services.common.clock import Clock
from services.common.errors import Conflict, FailedPrecondition, SesameError, Unavailable
from services.ledger.domain import reasons
from services.ledger.domain.canonical import parse_canonical_json, plain_canonical_json
from services.ledger.domain.codec import from_plain, to_plain, with_defaults
from services.ledger.service.notifier import EntryNotifier
from services.ledger.service.ports import LedgerStorage, RequestOutcome, StoredRequest
from services.ledger.service.retry import RetryPolicy, with_retries
from services.ledger.service.write_unit import RequestScope, WriteUnit

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

# A batch's weight is the number of users its requests may touch; a partner statement batch
# of 1000 reports weighs 1000 and runs alone.
BATCH_WEIGHT_MAX = 1000

# How long a request waits for its batch (queueing included) before failing with UNAVAILABLE;
# a safety net well above any batch's run time, retries included.
WAIT_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Any = None
    error: BaseException | None = None

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


@dataclass(eq=False, slots=True)
class WriteJob:
    """One write request: what it locks and loads, and the rule that decides it."""

    method: str
    request_id: str
    request_hash: str
    result_type: type
    decide: Callable[[RequestScope], Any]
    # Users locked for the request: given directly, or found through a hold or an obligation.
    user_ids: tuple[str, ...] = ()
    hold_ids: tuple[str, ...] = ()
    obligation_ids: tuple[str, ...] = ()
    partner_data_user_ids: tuple[str, ...] = ()
    weight: int = 1
    outcome: Outcome | None = None
    # Set when the caller stopped waiting: a batch that defers the job drops it.
    abandoned: bool = False
    wakeup: threading.Event = field(default_factory=threading.Event)


class BatchWriter:
    """Runs write jobs in shared transactions; `submit` returns the job's result or raises."""

    def __init__(
        self,
        storage: LedgerStorage,
        clock: Clock,
        notifier: EntryNotifier,
        retry: RetryPolicy,
        *,
        batch_weight_max: int = BATCH_WEIGHT_MAX,
        batches_running_max: int = 1,
        wait_timeout_s: float = WAIT_TIMEOUT_S,
    ) -> None:
        assert batch_weight_max > 0 and batches_running_max > 0 and wait_timeout_s > 0
        self._wait_timeout_s = wait_timeout_s
        self._storage = storage
        self._clock = clock
        self._notifier = notifier
        self._retry = retry
        self._batch_weight_max = batch_weight_max
        # More than one batch may run at once where the database overlaps their work: while one
        # batch waits for its commit, the next takes its locks and reads.
        self._batches_running_max = batches_running_max
        self._lock = threading.Lock()
        self._queue: deque[WriteJob] = deque()
        self._batches_running = 0

    @property
    def queued_count(self) -> int:
        """How many requests wait for a batch to take them (those in a running batch aside)."""
        with self._lock:
            return len(self._queue)

    def submit(self, job: WriteJob) -> Any:
        batch = self._wait_for_outcome_or_lead(job)
        if batch is None:
            assert job.outcome is not None
            return job.outcome.unwrap()
        deferred: list[WriteJob] = []
        try:
            deferred = self._run(batch)
        finally:
            self._hand_over(batch, deferred)
        assert job.outcome is not None, "a leader's own request is first in its batch"
        return job.outcome.unwrap()

    def _wait_for_outcome_or_lead(self, job: WriteJob) -> list[WriteJob] | None:
        """Waits until another leader has run the job (None) or the job leads a batch; fails
        with UNAVAILABLE once it has waited `wait_timeout_s`."""
        deadline = time.monotonic() + self._wait_timeout_s
        with self._lock:
            self._queue.append(job)
        while True:
            with self._lock:
                if job.outcome is not None:
                    return None
                # A job already taken into another leader's batch is no longer queued.
                at_front = bool(self._queue) and self._queue[0] is job
                if at_front and self._batches_running < self._batches_running_max:
                    self._batches_running += 1
                    batch = self._take_batch()
                    self._wake_next_leader()
                    return batch
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    self._give_up(job)
                job.wakeup.clear()
            job.wakeup.wait(remaining_s)

    def _give_up(self, job: WriteJob) -> None:
        """Called with the lock held: the job leaves the queue (if a batch holds it, that
        batch's answer is stored and a retry with the same request id finds it)."""
        job.abandoned = True
        queued = job in self._queue
        if queued:
            self._queue.remove(job)
            self._wake_next_leader()
        log.warning("write_wait_timed_out", method=job.method, queued=queued)
        raise _contended()

    def _wake_next_leader(self) -> None:
        if self._queue and self._batches_running < self._batches_running_max:
            self._queue[0].wakeup.set()

    def _hand_over(self, batch: list[WriteJob], deferred: list[WriteJob]) -> None:
        """Wakes the batch's requests and the next leader only, so that waiting requests do
        not all compete for the interpreter on every batch. A request the run left without an
        outcome (it raised before handing them out) fails rather than waiting for ever."""
        with self._lock:
            requeued = [job for job in deferred if not job.abandoned]
            self._queue.extendleft(reversed(requeued))
            self._batches_running -= 1
            for done in batch:
                if done.outcome is None and not any(done is job for job in requeued):
                    done.outcome = Outcome(error=_contended())
                done.wakeup.set()
            self._wake_next_leader()

    def _take_batch(self) -> list[WriteJob]:
        batch = [self._queue.popleft()]
        weight = batch[0].weight
        while self._queue and weight + self._queue[0].weight <= self._batch_weight_max:
            job = self._queue.popleft()
            weight += job.weight
            batch.append(job)
        return batch

    def _run(self, batch: list[WriteJob]) -> list[WriteJob]:
        """Runs the batch and sets every job's outcome, except jobs deferred to a later batch."""
        try:
            outcomes, deferred = with_retries(self._retry, lambda: self._run_once(batch))
        except Unavailable as error:
            # One error each: an exception raised in several threads at once shares its traceback.
            outcomes = {
                job: Outcome(error=Unavailable(error.message, reason=error.reason)) for job in batch
            }
            deferred = []
        except Exception as error:
            if len(batch) == 1:
                log.exception("write_failed", method=batch[0].method)
                outcomes, deferred = {batch[0]: Outcome(error=error)}, []
            else:
                # Something unexpected failed the shared transaction; run each request on its
                # own so that only the request at fault fails.
                return [job for single in batch for job in self._run([single])]
        for job, outcome in outcomes.items():
            job.outcome = outcome
        return deferred

    def _run_once(
        self, batch: Sequence[WriteJob]
    ) -> tuple[dict[WriteJob, Outcome], list[WriteJob]]:
        outcomes: dict[WriteJob, Outcome] = {}
        deferred: list[WriteJob] = []
        with self._storage.write() as transaction:
            unit = WriteUnit(transaction, self._clock.now_us())
            stored = _prepare(unit, batch)
            seen_request_ids: set[str] = set()
            for job in batch:
                if job.request_id in seen_request_ids:
                    deferred.append(job)
                elif job.request_id in stored:
                    outcomes[job] = _replayed(stored[job.request_id], job)
                else:
                    outcomes[job] = _decided(unit, job)
                seen_request_ids.add(job.request_id)
            appended = unit.persist()
        if appended:
            self._notifier.published()
        return outcomes, deferred


def _contended() -> Unavailable:
    return Unavailable(
        "the ledger is too busy right now; retry with the same request_id",
        reason=reasons.STORAGE_CONTENDED,
    )


def _prepare(unit: WriteUnit, batch: Sequence[WriteJob]) -> dict[str, StoredRequest]:
    """Locks what the batch's requests name (holds, obligations, then every user's account,
    in one go) and loads their partner data; returns the stored answers by request id."""
    stored = unit.lock(
        hold_ids=(hold_id for job in batch for hold_id in job.hold_ids),
        obligation_ids=(obligation_id for job in batch for obligation_id in job.obligation_ids),
        user_ids=(user_id for job in batch for user_id in job.user_ids),
        request_ids=(job.request_id for job in batch),
    )
    unit.load_partner_data(sorted({user for job in batch for user in job.partner_data_user_ids}))
    return stored


def _decided(unit: WriteUnit, job: WriteJob) -> Outcome:
    """Lets the job's rule decide. A business refusal is stored like a success; invalid input
    and unknown holds or obligations are not (their answer can never change)."""
    entries_before = unit.entry_count
    try:
        result = job.decide(RequestScope(unit, job.request_id, job.request_hash))
    except FailedPrecondition as error:
        assert unit.entry_count == entries_before, "a refused request records nothing"
        unit.add_request(_failure_record(job, error, unit.now_us))
        return Outcome(error=error)
    except SesameError as error:
        assert unit.entry_count == entries_before, "a rejected request records nothing"
        return Outcome(error=error)
    unit.add_request(_success_record(job, result, unit.now_us, unit.entry_count - entries_before))
    return Outcome(result=result)


def _replayed(stored: StoredRequest, job: WriteJob) -> Outcome:
    """The stored answer to a retried request; REQUEST_ID_REUSED when the request differs."""
    if stored.request_hash != job.request_hash:
        return Outcome(
            error=Conflict(
                "this request_id was already used for a different request",
                reason=reasons.REQUEST_ID_REUSED,
            )
        )
    if stored.outcome is RequestOutcome.FAILED:
        return Outcome(error=FailedPrecondition(stored.error_message, reason=stored.error_reason))
    stored_result = with_defaults(job.result_type, parse_canonical_json(stored.response_json))
    return Outcome(result=from_plain(job.result_type, stored_result))


def _success_record(job: WriteJob, result: Any, now_us: int, entry_count: int) -> StoredRequest:
    return StoredRequest(
        request_id=job.request_id,
        request_hash=job.request_hash,
        method=job.method,
        outcome=RequestOutcome.SUCCEEDED,
        response_json=plain_canonical_json(to_plain(result)),
        error_reason="",
        error_message="",
        recorded_at_us=now_us,
        entry_count=entry_count,
    )


def _failure_record(job: WriteJob, error: FailedPrecondition, now_us: int) -> StoredRequest:
    return StoredRequest(
        request_id=job.request_id,
        request_hash=job.request_hash,
        method=job.method,
        outcome=RequestOutcome.FAILED,
        response_json="",
        error_reason=error.reason,
        error_message=error.message,
        recorded_at_us=now_us,
    )
