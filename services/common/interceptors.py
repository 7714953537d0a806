"""Server interceptors for the synchronous gRPC server: errors, access log and metrics.

`default_interceptors()` returns them in the order the server needs:

1. `CallObservingInterceptor` (outermost) times every call and, once the final status is
   known, tells the observers (`services.common.call_observation`: access log and metrics).
2. `ErrorTranslationInterceptor` (innermost) aborts with the status
   `services.common.grpc_errors.handler_error_status` gives for whatever a handler raised, so
   no exception text ever reaches a caller. It also gives each handler a deserializer that never
   raises, so that bytes which are no valid request answer INVALID_ARGUMENT
   (REQUEST_UNDECODABLE) rather than gRPC's INTERNAL (`services.common.request_decoding`).

What they decide is decided in those two modules, for both runtimes; these classes only adapt
the synchronous API to them (`services.common.aio_interceptors` does the same for grpc.aio).
Both wrap all four kinds of handler. For a streaming response the call completes when the
stream ends, or when the server closes it because the caller went away, so that is when it is
observed.

Not observed: calls the server rejects before any handler runs (unknown method, the
`max_concurrent_rpcs` limit, a request over `max_message_bytes`), and handlers gRPC runs
off its worker pool (marked `experimental_non_blocking`, such as health Watch): wrapping
those would make each open stream hold a worker thread for as long as it lasts.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Never, Protocol, cast

import grpc

from services.common.access import CallGuard
from services.common.call_observation import (
    ABANDONING_EXCEPTIONS,
    DEFAULT_OBSERVERS,
    CallEnding,
    CallObserver,
    CallObservers,
    final_code,
)
from services.common.grpc_errors import handler_error_status
from services.common.request_decoding import (
    decoded_requests,
    require_decoded,
    tolerant_deserializer,
)
from services.common.tracing import server_interceptors

UnaryResponseBehavior = Callable[[Any, grpc.ServicerContext], Any]
StreamResponseBehavior = Callable[[Any, grpc.ServicerContext], Iterator[Any]]


def default_interceptors(guard: CallGuard | None = None) -> list[grpc.ServerInterceptor]:
    """The interceptors every Sesame server runs, outermost first: tracing when it is on
    (`services.common.tracing`), so the call's span is current for everything else; with a
    `guard` (a TLS server), the access check inside the observation, so refusals are logged
    and counted like any other answer."""
    return [
        *server_interceptors(),
        CallObservingInterceptor(DEFAULT_OBSERVERS),
        *([AccessInterceptor(guard)] if guard is not None else []),
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
    """Aborts with the status `handler_error_status` gives for what the handler raised.

    An abort the servicer started itself (`context.abort`) passes through untouched, and so
    does whatever is raised once the caller has gone. A request that cannot be deserialized
    reaches the wrapped behaviour as a marker, which it answers INVALID_ARGUMENT.
    """

    def _wrapped(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        return super()._wrapped(_with_requests_decoded(handler), method)

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
                recording_context.abort_with_status(handler_error_status(error, method))

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
                recording_context.abort_with_status(handler_error_status(error, method))

        return translated


def _with_requests_decoded(
    handler: grpc.RpcMethodHandler[Any, Any],
) -> grpc.RpcMethodHandler[Any, Any]:
    """The handler with a deserializer that never raises and behaviour that refuses what it
    could not decode (see `services.common.request_decoding`). A handler run off the worker pool
    is left as it is, like every wrapper leaves it."""
    deserializer = tolerant_deserializer(handler.request_deserializer)
    serializer = handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _unary_request_decoded(handler.unary_unary), deserializer, serializer
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _stream_request_decoded(handler.stream_unary), deserializer, serializer
        )
    if handler.unary_stream is not None and not _runs_off_the_worker_pool(handler.unary_stream):
        return grpc.unary_stream_rpc_method_handler(
            _unary_request_decoded(handler.unary_stream), deserializer, serializer
        )
    if handler.stream_stream is not None and not _runs_off_the_worker_pool(handler.stream_stream):
        return grpc.stream_stream_rpc_method_handler(
            _stream_request_decoded(handler.stream_stream), deserializer, serializer
        )
    return handler


def _unary_request_decoded(behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def decoded(request: Any, context: Any) -> Any:
        require_decoded(request)
        return behavior(request, context)

    return decoded


def _stream_request_decoded(behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def decoded(requests: Iterator[Any], context: Any) -> Any:
        return behavior(decoded_requests(requests), context)

    return decoded


def _is_grpc_ending_the_call(error: Exception, context: _AbortRecordingContext) -> bool:
    # After an abort the exception is gRPC's own signal. Once the caller has cancelled or its
    # deadline has passed, gRPC raises RpcError from the request iterator: nobody is left to
    # tell, and it is no crash.
    return context.aborted or (isinstance(error, grpc.RpcError) and not context.is_active())


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


# Access: who may call what


class AccessInterceptor(BehaviorInterceptor):
    """Refuses a call its `CallGuard` refuses, before the handler sees it."""

    def __init__(self, guard: CallGuard) -> None:
        self._guard = guard

    def around_unary_response(
        self, method: str, behavior: UnaryResponseBehavior
    ) -> UnaryResponseBehavior:
        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            self._admit(method, request, context)
            return behavior(request, context)

        return guarded

    def around_stream_response(
        self, method: str, behavior: StreamResponseBehavior
    ) -> StreamResponseBehavior:
        def guarded(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            self._admit(method, request, context)
            yield from behavior(request, context)

        return guarded

    def _admit(self, method: str, request: Any, context: grpc.ServicerContext) -> None:
        refusal = self._guard.refusal(
            method, request, context.auth_context(), context.invocation_metadata()
        )
        if refusal is not None:
            context.abort_with_status(refusal)


# Observation: access log and metrics


class CallObservingInterceptor(BehaviorInterceptor):
    """Tells each observer about every call once it has completed."""

    def __init__(self, observers: Sequence[CallObserver]) -> None:
        self._observers = CallObservers(observers)

    def around_unary_response(
        self, method: str, behavior: UnaryResponseBehavior
    ) -> UnaryResponseBehavior:
        def observed(request: Any, context: grpc.ServicerContext) -> Any:
            started_s = time.perf_counter()
            ending = CallEnding.RAISED
            try:
                response = behavior(request, context)
                ending = CallEnding.RETURNED
                return response
            finally:
                self._notify(method, request, context, started_s, ending)

        return observed

    def around_stream_response(
        self, method: str, behavior: StreamResponseBehavior
    ) -> StreamResponseBehavior:
        def observed(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started_s = time.perf_counter()
            ending = CallEnding.RAISED
            try:
                yield from behavior(request, context)
                ending = CallEnding.RETURNED
            except ABANDONING_EXCEPTIONS:
                ending = CallEnding.ABANDONED
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
        ending: CallEnding,
    ) -> None:
        code = final_code(
            _readable_status(context).code(),
            ending,
            caller_gone=not context.is_active(),
            time_remaining_s=context.time_remaining(),
        )
        self._observers.notify(
            method, code, started_s, request, context.invocation_metadata(), context.peer()
        )
