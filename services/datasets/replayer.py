"""Replays a Taiwan credit data set file into the ledger as partner-reported statements.

The whole file is read and checked before anything is sent, so a bad value on the last line
stops the replay before the first write. Rows then go out in `RecordPartnerStatements` batches,
one call at a time, each with a deadline. A batch's request_id is derived from its content, so
running the same file again sends the same requests and changes nothing; with another batch size
the ids differ, and still nothing changes, because the ledger is idempotent per user and period.
A replay that fails part way is therefore resumed by running it again.

Each replayed user's consent to be scored is granted with the batch (RecordConsent, as an
operator, under a request id derived from the user; see `services.datasets.consent`): the data
set stands for people who agreed with their partner to be scored, and a replay is how the
suite gets users it may score (`make score-csv`, `make simulate`, the tests and benchmarks).
`grant_consents=False` (`sesame-replay --without-consent`) replays histories alone, which the
score service then refuses to score (CONSENT_MISSING) until each user grants consent.

The summary adds up what the ledger answered. A request it has seen before is answered with the
response it stored the first time, so a rerun with the same batch size repeats the first run's
counts ("recorded") even though it recorded nothing; a rerun with another batch size reports
every statement "unchanged". The journal, not the summary, is the proof that nothing changed.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import grpc
from sesame.ledger.v1 import ledger_service_pb2, ledger_service_pb2_grpc
from tqdm import tqdm

from services.common.grpc_errors import error_details
from services.datasets.consent import ConsentRecorder, grant_consent
from services.datasets.taiwan import TaiwanRow, read_rows, to_partner_report

# The contract allows 1 to 1000 reports per batch.
BATCH_SIZE_MAX = 1000
BATCH_SIZE_DEFAULT = 500
DEADLINE_S_DEFAULT = 30.0
REQUEST_ID_PREFIX = "replay-"
CONSENT_REQUEST_ID_PREFIX = "replay-consent-"
# 40 hex digits (160 bits) of SHA-256: no two different batches will ever share an id.
REQUEST_ID_HEX_DIGITS = 40

# Both are safe to retry with the same request_id: the ledger either never saw the batch or
# answers the retry with the response it stored for the first attempt.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

_REPORT_FIELD = re.compile(r"reports\[(\d+)\]")

RecordPartnerStatementsCall = Callable[..., ledger_service_pb2.RecordPartnerStatementsResponse]


class PartnerStatementsRecorder(ConsentRecorder, Protocol):
    """The calls of the ledger the replay needs (a `LedgerServiceStub`, or a fake in tests)."""

    # Named after the gRPC method, as the generated stub names it.
    @property
    def RecordPartnerStatements(self) -> RecordPartnerStatementsCall: ...


class ReplayError(Exception):
    """The replay stopped; the message says why and is meant for the person running it."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a batch is retried after UNAVAILABLE or DEADLINE_EXCEEDED."""

    attempts_max: int = 5
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 8.0
    # Replaceable so tests do not wait.
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def backoff_s(self, failed_attempts: int) -> float:
        # Doubling after each failure; without jitter, because a single replay is the only
        # client and there is no crowd of retries to spread out.
        return min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** (failed_attempts - 1))


@dataclass(frozen=True)
class ReplaySummary:
    """What a replay did, summed over the ledger's per-report results."""

    rows: int
    batches: int
    statements_recorded: int
    statements_unchanged: int
    credit_lines_recorded: int
    seconds: float

    def line(self) -> str:
        rows_per_second = self.rows / self.seconds if self.seconds > 0 else 0.0
        return (
            f"replayed {self.rows} rows in {self.batches} batches:"
            f" {self.statements_recorded} statements recorded,"
            f" {self.statements_unchanged} unchanged,"
            f" {self.credit_lines_recorded} credit lines recorded,"
            f" {self.seconds:.1f} s ({rows_per_second:.0f} rows/s)"
        )


def replay_csv(
    path: Path | str,
    channel_or_stub: grpc.Channel | PartnerStatementsRecorder,
    *,
    batch_size: int = BATCH_SIZE_DEFAULT,
    deadline_s: float = DEADLINE_S_DEFAULT,
    progress: bool = True,
    retry_policy: RetryPolicy | None = None,
    grant_consents: bool = True,
) -> ReplaySummary:
    """Replays every row of a data set file (``.csv`` or ``.csv.gz``) into the ledger.

    Raises `TaiwanDataError` for a bad file (before anything is sent) and `ReplayError` when the
    ledger rejects a batch or stays unreachable; batches sent before the failure stay recorded.
    """
    if not 1 <= batch_size <= BATCH_SIZE_MAX:
        raise ValueError(f"batch_size must be 1 to {BATCH_SIZE_MAX}, got {batch_size}")
    if deadline_s <= 0:
        raise ValueError(f"deadline_s must be positive, got {deadline_s}")
    rows = list(read_rows(path))
    _check_each_client_once(path, rows)
    recorder = _recorder(channel_or_stub)
    policy = retry_policy or RetryPolicy()
    started = time.monotonic()
    totals = _Totals()
    with tqdm(total=len(rows), unit="rows", disable=not progress) as progress_bar:
        for batch in _batches(rows, batch_size):
            request = batch_request(batch)
            response = _send(recorder, request, deadline_s, policy, totals)
            totals.add(request, response)
            if grant_consents:
                _grant_consents(recorder, request, deadline_s, totals)
            progress_bar.update(len(batch))
    return totals.summary(time.monotonic() - started)


def batch_request(rows: Sequence[TaiwanRow]) -> ledger_service_pb2.RecordPartnerStatementsRequest:
    """The request that records these rows, with its content-derived request_id."""
    request = ledger_service_pb2.RecordPartnerStatementsRequest(
        reports=[to_partner_report(row) for row in rows]
    )
    request.request_id = request_id_for(request)
    return request


def request_id_for(request: ledger_service_pb2.RecordPartnerStatementsRequest) -> str:
    """ "replay-" and the start of the SHA-256 of the batch's reports, ignoring any request_id.

    Deterministic serialization gives the same bytes for the same reports in one protobuf
    version. Should another version ever serialize differently, the ids of a rerun would
    differ, and the ledger would still change nothing, being idempotent per user and period.
    """
    reports_only = ledger_service_pb2.RecordPartnerStatementsRequest(reports=request.reports)
    digest = hashlib.sha256(reports_only.SerializeToString(deterministic=True)).hexdigest()
    return REQUEST_ID_PREFIX + digest[:REQUEST_ID_HEX_DIGITS]


class _Totals:
    """Running sums of the ledger's results."""

    def __init__(self) -> None:
        self.rows = 0
        self.batches = 0
        self.statements_recorded = 0
        self.statements_unchanged = 0
        self.credit_lines_recorded = 0

    def add(
        self,
        request: ledger_service_pb2.RecordPartnerStatementsRequest,
        response: ledger_service_pb2.RecordPartnerStatementsResponse,
    ) -> None:
        _check_results_match(request, response)
        self.rows += len(request.reports)
        self.batches += 1
        for result in response.results:
            self.statements_recorded += result.statements_recorded
            self.statements_unchanged += result.statements_unchanged
            self.credit_lines_recorded += int(result.credit_line_recorded)

    def summary(self, seconds: float) -> ReplaySummary:
        return ReplaySummary(
            rows=self.rows,
            batches=self.batches,
            statements_recorded=self.statements_recorded,
            statements_unchanged=self.statements_unchanged,
            credit_lines_recorded=self.credit_lines_recorded,
            seconds=seconds,
        )

    def progress_note(self) -> str:
        if self.batches == 0:
            return "nothing was recorded"
        return (
            f"the first {self.batches} batches ({self.rows} rows) are recorded;"
            " running the same replay again resumes safely"
        )


def _recorder(
    channel_or_stub: grpc.Channel | PartnerStatementsRecorder,
) -> PartnerStatementsRecorder:
    if isinstance(channel_or_stub, grpc.Channel):
        return ledger_service_pb2_grpc.LedgerServiceStub(channel_or_stub)
    return channel_or_stub


def _check_each_client_once(path: Path | str, rows: Sequence[TaiwanRow]) -> None:
    # The ledger rejects a user twice in one batch; across batches the later row would silently
    # replace the earlier one, so a repeated ID means the file is not what it claims to be.
    seen: set[int] = set()
    for row in rows:
        if row.client_id in seen:
            raise ReplayError(f"{path}: client ID {row.client_id} appears more than once")
        seen.add(row.client_id)


def _batches(rows: Sequence[TaiwanRow], batch_size: int) -> Iterator[Sequence[TaiwanRow]]:
    for start in range(0, len(rows), batch_size):
        yield rows[start : start + batch_size]


def _send(
    recorder: PartnerStatementsRecorder,
    request: ledger_service_pb2.RecordPartnerStatementsRequest,
    deadline_s: float,
    policy: RetryPolicy,
    totals: _Totals,
) -> ledger_service_pb2.RecordPartnerStatementsResponse:
    for attempt in range(1, policy.attempts_max + 1):
        try:
            return recorder.RecordPartnerStatements(request, timeout=deadline_s)
        except grpc.RpcError as error:
            code = _status_code(error)
            if code not in RETRYABLE_CODES:
                raise ReplayError(_rejection_message(request, error, totals)) from None
            if attempt == policy.attempts_max:
                raise ReplayError(
                    f"the ledger still answered {code.name} after {attempt} attempts"
                    f" of batch {request.request_id}; {totals.progress_note()}"
                ) from None
            policy.sleep(policy.backoff_s(attempt))
    raise AssertionError("unreachable: the loop returns or raises on its last attempt")


def _grant_consents(
    recorder: PartnerStatementsRecorder,
    request: ledger_service_pb2.RecordPartnerStatementsRequest,
    deadline_s: float,
    totals: _Totals,
) -> None:
    try:
        grant_consent(
            recorder,
            [report.user_id for report in request.reports],
            request_id_prefix=CONSENT_REQUEST_ID_PREFIX,
            deadline_s=deadline_s,
        )
    except grpc.RpcError as error:
        raise ReplayError(
            f"the ledger refused the consent of a user of batch {request.request_id}:"
            f" {_status_code(error).name}; {totals.progress_note()}"
        ) from None


def _status_code(error: grpc.RpcError) -> grpc.StatusCode:
    # Errors raised by a channel are also grpc.Call objects, which carry the status code.
    code = error.code() if isinstance(error, grpc.Call) else None
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _rejection_message(
    request: ledger_service_pb2.RecordPartnerStatementsRequest,
    error: grpc.RpcError,
    totals: _Totals,
) -> str:
    code = _status_code(error)
    message = error.details() if isinstance(error, grpc.Call) else str(error)
    details = error_details(error)
    explained = [f"reason {details.reason}"] if details.reason else []
    if details.field_names:
        fields = ", ".join(_described_field(request, name) for name in details.field_names)
        explained.append(f"field {fields}")
    status = f"{code.name} ({'; '.join(explained)})" if explained else code.name
    return (
        f"the ledger rejected batch {request.request_id}: {status}: {message};"
        f" {totals.progress_note()}"
    )


def _described_field(request: ledger_service_pb2.RecordPartnerStatementsRequest, name: str) -> str:
    # "reports[12].credit_line" alone leaves the reader counting rows; name the user as well.
    match = _REPORT_FIELD.match(name)
    if match is None or int(match.group(1)) >= len(request.reports):
        return name
    return f"{name} (user {request.reports[int(match.group(1))].user_id})"


def _check_results_match(
    request: ledger_service_pb2.RecordPartnerStatementsRequest,
    response: ledger_service_pb2.RecordPartnerStatementsResponse,
) -> None:
    # The contract promises one result per report in request order; counting results from
    # anything else would make the summary lie.
    sent = [report.user_id for report in request.reports]
    answered = [result.user_id for result in response.results]
    if sent != answered:
        raise ReplayError(
            f"the ledger answered batch {request.request_id} with results for other users"
            f" ({len(answered)} results for {len(sent)} reports)"
        )
