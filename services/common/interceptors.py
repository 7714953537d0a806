"""Server interceptors for the synchronous gRPC server: errors, access log and metrics.

`default_interceptors()` returns them in the order the server needs:

1. `CallObservingInterceptor` (outermost) times every call and, once the final status is
   known, hands a `CompletedCall` to its observers: the access log (`log_completed_call`,
   one "rpc_completed" line per call) and the Prometheus metrics (`record_call_metrics`).
2. `ErrorTranslationInterceptor` (innermost) turns a `SesameError` into its rich status and
   anything else into a generic INTERNAL, so no exception text ever reaches a caller.

Both wrap all four kinds of handler. For a streaming response the call completes when the
stream ends, so that is when it is observed.

Not observed: calls the server rejects before any handler runs (unknown method, the
`max_concurrent_rpcs` limit, a request over `max_message_bytes`), and handlers gRPC runs
off its worker pool (marked `experimental_non_blocking`, such as health Watch): wrapping
those would make each open stream hold a worker thread for as long as it lasts.
"""

from __future__ import annotations

import abc
import enum
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Never, Protocol, cast

import grpc
import structlog
from prometheus_client import Counter, Histogram

from services.common.errors import SesameError, Unimplemented
from services.common.grpc_errors import to_rpc_status

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

INTERNAL_ERROR_MESSAGE = "internal error"
REQUEST_ID_METADATA_KEY = "x-request-id"

UnaryResponseBehavior = Callable[[Any, grpc.ServicerContext], Any]
StreamResponseBehavior = Callable[[Any, grpc.ServicerContext], Iterator[Any]]


def default_interceptors() -> list[grpc.ServerInterceptor]:
    """The interceptors every Sesame server runs, outermost first."""
    return [
        CallObservingInterceptor([log_completed_call, record_call_metrics]),
        ErrorTranslationInterceptor(),
    ]


class BehaviorInterceptor(grpc.ServerInterceptor, abc.ABC):
    """Wraps the behaviour of every handler; subclasses say how, per response kind."""

    @abc.abstractmethod
    def around_unary_response(
        self, method: str, behavior: UnaryResponseBehavior
    ) -> UnaryResponseBehavior: ...

    @abc.abstractmethod
    def around_stream_response(
        self, method: str, behavior: StreamResponseBehavior
    ) -> StreamResponseBehavior: ...

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return self._wrapped(handler, handler_call_details.method)

    def _wrapped(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        deserializer = handler.request_deserializer
        serializer = handler.response_serializer
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self.around_unary_response(method, handler.unary_unary), deserializer, serializer
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self.around_unary_response(method, handler.stream_unary), deserializer, serializer
            )
        if handler.unary_stream is not None:
            if _runs_off_the_worker_pool(handler.unary_stream):
                return handler
            return grpc.unary_stream_rpc_method_handler(
                self.around_stream_response(method, handler.unary_stream), deserializer, serializer
            )
        if handler.stream_stream is not None:
            if _runs_off_the_worker_pool(handler.stream_stream):
                return handler
            return grpc.stream_stream_rpc_method_handler(
                self.around_stream_response(method, handler.stream_stream),
                deserializer,
                serializer,
            )
        return handler


def _runs_off_the_worker_pool(behavior: object) -> bool:
    # gRPC checks this attribute on the behaviour itself; a wrapper would hide it.
    return bool(getattr(behavior, "experimental_non_blocking", False))


# Error translation


class ErrorTranslationInterceptor(BehaviorInterceptor):
    """Aborts with the rich status of a `SesameError`, or INTERNAL for anything else.

    An abort the servicer started itself (`context.abort`) passes through untouched, and so
    does whatever is raised once the caller has gone.
    """

    def around_unary_response(
        self, method: str, behavior: UnaryResponseBehavior
    ) -> UnaryResponseBehavior:
        def translated(request: Any, context: grpc.ServicerContext) -> Any:
            recording_context = _AbortRecordingContext(context)
            try:
                return behavior(request, recording_context)
            except Exception as error:
                if _is_grpc_ending_the_call(error, recording_context):
                    raise
                _abort_with_translation(error, method, recording_context)

        return translated

    def around_stream_response(
        self, method: str, behavior: StreamResponseBehavior
    ) -> StreamResponseBehavior:
        def translated(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            recording_context = _AbortRecordingContext(context)
            try:
                yield from behavior(request, recording_context)
            except Exception as error:
                if _is_grpc_ending_the_call(error, recording_context):
                    raise
                _abort_with_translation(error, method, recording_context)

        return translated


def _is_grpc_ending_the_call(error: Exception, context: _AbortRecordingContext) -> bool:
    # After an abort the exception is gRPC's own signal. Once the caller has cancelled or its
    # deadline has passed, gRPC raises RpcError from the request iterator: nobody is left to
    # tell, and it is no crash.
    return context.aborted or (isinstance(error, grpc.RpcError) and not context.is_active())


def _abort_with_translation(error: Exception, method: str, context: grpc.ServicerContext) -> Never:
    if isinstance(error, NotImplementedError):
        # The generated base servicers raise it for every RPC a service has not built yet.
        error = Unimplemented(f"{method} is not implemented yet")
    if isinstance(error, SesameError):
        context.abort_with_status(to_rpc_status(error))
    # Called from an except block, so the traceback goes to the log, never to the caller.
    log.exception("rpc_handler_crashed", method=method)
    context.abort(grpc.StatusCode.INTERNAL, INTERNAL_ERROR_MESSAGE)


class _AbortRecordingContext(grpc.ServicerContext):
    """Passes everything to the real context, noting whether the servicer aborted.

    `context.abort` ends the handler by raising a plain `Exception`; recording the call is
    the only reliable way to tell that exception from a crash.
    """

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context
        self.aborted = False

    def abort(self, code: grpc.StatusCode, details: str) -> Never:
        self.aborted = True
        self._context.abort(code, details)

    def abort_with_status(self, status: grpc.Status) -> Never:
        self.aborted = True
        self._context.abort_with_status(status)

    def code(self) -> grpc.StatusCode | None:
        return _readable_status(self._context).code()

    def details(self) -> bytes | None:
        return _readable_status(self._context).details()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return self._context.add_callback(callback)

    def cancel(self) -> bool:
        return self._context.cancel()

    def is_active(self) -> bool:
        return self._context.is_active()

    def time_remaining(self) -> float:
        return self._context.time_remaining()

    def auth_context(self) -> Mapping[str, bytes]:
        return self._context.auth_context()

    def disable_next_message_compression(self) -> None:
        self._context.disable_next_message_compression()

    def invocation_metadata(self) -> Any:
        return self._context.invocation_metadata()

    def peer(self) -> str:
        return self._context.peer()

    def peer_identities(self) -> Iterable[bytes] | None:
        return self._context.peer_identities()

    def peer_identity_key(self) -> str | None:
        return self._context.peer_identity_key()

    def send_initial_metadata(self, initial_metadata: Any) -> None:
        self._context.send_initial_metadata(initial_metadata)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._context.set_code(code)

    def set_compression(self, compression: grpc.Compression) -> None:
        self._context.set_compression(compression)

    def set_details(self, details: str) -> None:
        self._context.set_details(details)

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        self._context.set_trailing_metadata(trailing_metadata)

    def trailing_metadata(self) -> Any:
        return self._context.trailing_metadata()


class _StatusReadableContext(Protocol):
    """The server context's status getters, which gRPC has but its type stubs omit."""

    def code(self) -> grpc.StatusCode | None: ...

    def details(self) -> bytes | None: ...


def _readable_status(context: grpc.ServicerContext) -> _StatusReadableContext:
    return cast(_StatusReadableContext, context)


# Observation: access log and metrics


@dataclass(frozen=True)
class CompletedCall:
    """One finished call, as the access log and the metrics see it."""

    method: str  # the full name, "/package.Service/Method"
    code: grpc.StatusCode
    duration_s: float
    request_id: str
    peer: str

    @property
    def service_name(self) -> str:
        return self.method.lstrip("/").partition("/")[0]

    @property
    def method_name(self) -> str:
        return self.method.lstrip("/").partition("/")[2]


CallObserver = Callable[[CompletedCall], None]


class _Ending(enum.Enum):
    RETURNED = enum.auto()
    RAISED = enum.auto()
    # The response stream was closed before its end: the caller went away.
    ABANDONED = enum.auto()


# The code gRPC sends when the handler did not choose one.
_CODE_BY_ENDING = {
    _Ending.RETURNED: grpc.StatusCode.OK,
    _Ending.RAISED: grpc.StatusCode.UNKNOWN,
    _Ending.ABANDONED: grpc.StatusCode.CANCELLED,
}


class CallObservingInterceptor(BehaviorInterceptor):
    """Tells each observer about every call once it has completed."""

    def __init__(self, observers: Sequence[CallObserver]) -> None:
        self._observers = tuple(observers)

    def around_unary_response(
        self, method: str, behavior: UnaryResponseBehavior
    ) -> UnaryResponseBehavior:
        def observed(request: Any, context: grpc.ServicerContext) -> Any:
            started_s = time.perf_counter()
            ending = _Ending.RAISED
            try:
                response = behavior(request, context)
                ending = _Ending.RETURNED
                return response
            finally:
                self._notify(method, request, context, started_s, ending)

        return observed

    def around_stream_response(
        self, method: str, behavior: StreamResponseBehavior
    ) -> StreamResponseBehavior:
        def observed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started_s = time.perf_counter()
            ending = _Ending.RAISED
            try:
                yield from behavior(request, context)
                ending = _Ending.RETURNED
            except GeneratorExit:
                ending = _Ending.ABANDONED
                raise
            finally:
                self._notify(method, request, context, started_s, ending)

        return observed

    def _notify(
        self,
        method: str,
        request: Any,
        context: grpc.ServicerContext,
        started_s: float,
        ending: _Ending,
    ) -> None:
        completed_call = CompletedCall(
            method=method,
            code=_final_code(context, ending),
            duration_s=time.perf_counter() - started_s,
            request_id=request_id_of(request, context.invocation_metadata()),
            peer=context.peer(),
        )
        tell_observers(self._observers, completed_call)


def tell_observers(observers: Sequence[CallObserver], completed_call: CompletedCall) -> None:
    for observer in observers:
        try:
            observer(completed_call)
        except Exception:
            # Losing one log line or sample is better than failing a call that succeeded.
            log.exception("call_observer_failed", method=completed_call.method)


def _final_code(context: grpc.ServicerContext, ending: _Ending) -> grpc.StatusCode:
    chosen_code = _readable_status(context).code()
    if chosen_code is not None:
        return chosen_code
    if not context.is_active():
        # The caller went away before the handler finished.
        if context.time_remaining() <= 0:
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


def log_completed_call(call: CompletedCall) -> None:
    """The access log: one line per call, never with payloads."""
    log.info(
        "rpc_completed",
        method=call.method,
        code=call.code.name,
        duration_ms=round(call.duration_s * 1000, 3),
        request_id=call.request_id,
        peer=call.peer,
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


def record_call_metrics(call: CompletedCall) -> None:
    labels = {"service": call.service_name, "method": call.method_name, "code": call.code.name}
    HANDLED_CALLS.labels(**labels).inc()
    HANDLING_SECONDS.labels(**labels).observe(call.duration_s)
