"""What every finished call is observed as, on either runtime: access log and metrics.

The call-observing interceptor of each runtime (`services.common.interceptors`,
`services.common.aio_interceptors`) times the handler, notes how it ended (`CallEnding`) and
reads the call's context in its own API; everything else is decided here, once:

* `final_code`: the status the caller got, from the code the handler chose, whether the
  caller went away (and whether its deadline had passed), and how the handler ended;
* `request_id_of`: the request id the call is logged under;
* `CallObservers`: a `CompletedCall` for each observer (`log_completed_call`, one
  "rpc_completed" line per call; `record_call_metrics`, the Prometheus metrics); an observer
  that fails is logged and never fails the call.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from prometheus_client import Counter, Histogram

from services.common.pseudonyms import pseudonym, pseudonymised, user_ids_of
from services.common.tracing import current_trace_id, tracing_enabled

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

REQUEST_ID_METADATA_KEY = "x-request-id"


@dataclass(frozen=True)
class CompletedCall:
    """One finished call, as the access log and the metrics see it."""

    method: str  # the full name, "/package.Service/Method"
    code: grpc.StatusCode
    duration_s: float
    request_id: str
    peer: str
    # The pseudonyms of the users the request names (services.common.pseudonyms).
    users: tuple[str, ...] = ()

    @property
    def service_name(self) -> str:
        return self.method.lstrip("/").partition("/")[0]

    @property
    def method_name(self) -> str:
        return self.method.lstrip("/").partition("/")[2]


CallObserver = Callable[[CompletedCall], None]


class CallEnding(enum.Enum):
    """How the handler ended, as its interceptor saw it."""

    RETURNED = enum.auto()
    RAISED = enum.auto()
    # The runtime ended the handler because the caller went away: the synchronous server
    # closes the response generator, grpc.aio cancels the handler's task.
    ABANDONED = enum.auto()


# What a handler sees when its runtime abandons it (see CallEnding.ABANDONED).
ABANDONING_EXCEPTIONS = (GeneratorExit, asyncio.CancelledError)

# The code gRPC sends when the handler did not choose one and the caller is still there.
_CODE_BY_ENDING = {
    CallEnding.RETURNED: grpc.StatusCode.OK,
    CallEnding.RAISED: grpc.StatusCode.UNKNOWN,
    CallEnding.ABANDONED: grpc.StatusCode.CANCELLED,
}


def final_code(
    chosen_code: grpc.StatusCode | None,
    ending: CallEnding,
    *,
    caller_gone: bool,
    time_remaining_s: float | None,
) -> grpc.StatusCode:
    """The status code the call ended with.

    `chosen_code` is what the handler set or aborted with, if anything; `caller_gone` whether
    the runtime reports the call as no longer active; `time_remaining_s` what was left of the
    caller's deadline (None: no deadline).
    """
    if chosen_code is not None:
        return chosen_code
    if caller_gone or ending is CallEnding.ABANDONED:
        if time_remaining_s is not None and time_remaining_s <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    return _CODE_BY_ENDING[ending]


def request_id_of(request: Any, metadata: Iterable[tuple[str, str | bytes]]) -> str:
    """The request's `request_id` field if set, else the x-request-id header, else ""."""
    # A streamed request is an iterator of messages, which has no such field; its id can
    # only come from the header.
    request_id = getattr(request, "request_id", None)
    if isinstance(request_id, str) and request_id:
        return request_id
    for key, value in metadata:
        if key == REQUEST_ID_METADATA_KEY and isinstance(value, str):
            return value
    return ""


class CallObservers:
    """Tells each observer about a call once it has completed."""

    def __init__(self, observers: Sequence[CallObserver]) -> None:
        self._observers = tuple(observers)

    def notify(
        self,
        method: str,
        code: grpc.StatusCode,
        started_s: float,
        request: Any,
        metadata: Iterable[tuple[str, str | bytes]],
        peer: str,
    ) -> None:
        """`started_s` is the `time.perf_counter()` reading when the handler was entered.
        User ids never reach an observer: the request's users as pseudonyms, and the request
        id with any of their ids in it replaced by the pseudonym."""
        user_ids = user_ids_of(request)
        completed_call = CompletedCall(
            method=method,
            code=code,
            duration_s=time.perf_counter() - started_s,
            request_id=pseudonymised(request_id_of(request, metadata), user_ids),
            peer=peer,
            users=tuple(pseudonym(user_id) for user_id in user_ids),
        )
        for observer in self._observers:
            try:
                observer(completed_call)
            except Exception:
                # Losing one log line or sample is better than failing a call that succeeded.
                log.exception("call_observer_failed", method=completed_call.method)


def log_completed_call(call: CompletedCall) -> None:
    """The access log: one line per call, never with payloads; with the call's trace id when
    tracing is on, so a log line leads to its trace."""
    trace_fields = {"trace_id": current_trace_id()} if tracing_enabled() else {}
    log.info(
        "rpc_completed",
        method=call.method,
        code=call.code.name,
        duration_ms=round(call.duration_s * 1000, 3),
        request_id=call.request_id,
        peer=call.peer,
        **({"users": list(call.users)} if call.users else {}),
        **trace_fields,
    )


# Created once per process, on the default registry, so that several servers in one process
# (as in tests) share them instead of failing on duplicate registration, and so that what a
# service adds to the default registry is served on the same endpoint.
HANDLED_CALLS = Counter(
    "sesame_grpc_server_handled_total",
    "Calls completed by the server, by service, method and status code.",
    ["service", "method", "code"],
)
HANDLING_SECONDS = Histogram(
    "sesame_grpc_server_handling_seconds",
    "Time from the start of a call to its status, by service, method and status code.",
    ["service", "method", "code"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


# The two metrics of each service, method and code, looked up once rather than on every call.
_CALL_METRICS: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}


def record_call_metrics(call: CompletedCall) -> None:
    labels = (call.service_name, call.method_name, call.code.name)
    metrics = _CALL_METRICS.get(labels)
    if metrics is None:
        metrics = _CALL_METRICS.setdefault(
            labels, (HANDLED_CALLS.labels(*labels), HANDLING_SECONDS.labels(*labels))
        )
    handled, handling_seconds = metrics
    handled.inc()
    handling_seconds.observe(call.duration_s)


# What every Sesame server observes each call with.
DEFAULT_OBSERVERS: tuple[CallObserver, ...] = (log_completed_call, record_call_metrics)
