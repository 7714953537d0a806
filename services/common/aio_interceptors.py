"""Server interceptors for the asyncio gRPC server (grpc.aio): errors, access log and metrics.

The same two as the synchronous server's (`services.common.interceptors`), deciding the same
through the same shared functions, for handlers that are coroutines or async generators:

1. `AioCallObservingInterceptor` (outermost) times every call and tells the observers
   (`services.common.call_observation`) once the final status is known.
2. `AioErrorTranslationInterceptor` (innermost) aborts with the status
   `services.common.grpc_errors.handler_error_status` gives for whatever a handler raised, so
   no exception text ever reaches a caller. It also gives each handler a deserializer that never
   raises, so that bytes which are no valid request answer INVALID_ARGUMENT
   (REQUEST_UNDECODABLE) rather than UNKNOWN (`services.common.request_decoding`).

A handler written in the reader/writer style (a coroutine for a streaming call, such as health
Watch) is wrapped as a coroutine: it ends when its stream does. When the caller goes away,
grpc.aio cancels the handler's task; the call is then observed as CANCELLED (or
DEADLINE_EXCEEDED), as on the synchronous server.
"""

from __future__ import annotations

import abc
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

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
    decoded_requests_async,
    require_decoded,
    tolerant_deserializer,
)
from services.common.tracing import aio_server_interceptors

Context = grpc.aio.ServicerContext[Any, Any]
CoroutineBehavior = Callable[[Any, Context], Awaitable[Any]]
AsyncGeneratorBehavior = Callable[[Any, Context], AsyncIterator[Any]]


def default_aio_interceptors(guard: CallGuard | None = None) -> list[grpc.aio.ServerInterceptor]:
    """The interceptors every asyncio Sesame server runs, outermost first: tracing when it is
    on (`services.common.tracing`); with a `guard` (a TLS server), the access check."""
    return [
        *aio_server_interceptors(),
        AioCallObservingInterceptor(DEFAULT_OBSERVERS),
        *([AioAccessInterceptor(guard)] if guard is not None else []),
        AioErrorTranslationInterceptor(),
    ]


class AioBehaviorInterceptor(grpc.aio.ServerInterceptor, abc.ABC):
    """Wraps the behaviour of every handler; subclasses say how, per kind of behaviour."""

    @abc.abstractmethod
    def around_coroutine(self, method: str, behavior: CoroutineBehavior) -> CoroutineBehavior: ...

    @abc.abstractmethod
    def around_async_generator(
        self, method: str, behavior: AsyncGeneratorBehavior
    ) -> AsyncGeneratorBehavior: ...

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return self._wrapped(handler, handler_call_details.method)

    def _wrapped(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        kinds = (
            (handler.unary_unary, grpc.unary_unary_rpc_method_handler),
            (handler.unary_stream, grpc.unary_stream_rpc_method_handler),
            (handler.stream_unary, grpc.stream_unary_rpc_method_handler),
            (handler.stream_stream, grpc.stream_stream_rpc_method_handler),
        )
        for behavior, make_handler in kinds:
            if behavior is None:
                continue
            # The handler's type stubs describe the synchronous API; here they are async.
            async_behavior: Any = behavior
            wrapped: Any = (
                self.around_async_generator(method, async_behavior)
                if inspect.isasyncgenfunction(async_behavior)
                else self.around_coroutine(method, async_behavior)
            )
            return make_handler(wrapped, handler.request_deserializer, handler.response_serializer)
        return handler


# Error translation


class AioErrorTranslationInterceptor(AioBehaviorInterceptor):
    """Aborts with the status `handler_error_status` gives for what the handler raised.

    An abort the servicer started itself passes through untouched, and so does cancellation
    (the caller went away: nobody is left to tell). A request that cannot be deserialized
    reaches the wrapped behaviour as a marker, which it answers INVALID_ARGUMENT.
    """

    def _wrapped(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        return super()._wrapped(_with_requests_decoded(handler), method)

    def around_coroutine(self, method: str, behavior: CoroutineBehavior) -> CoroutineBehavior:
        async def translated(request: Any, context: Context) -> Any:
            try:
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await context.abort_with_status(handler_error_status(error, method))

        return translated

    def around_async_generator(
        self, method: str, behavior: AsyncGeneratorBehavior
    ) -> AsyncGeneratorBehavior:
        async def translated(request: Any, context: Context) -> AsyncIterator[Any]:
            try:
                async for response in behavior(request, context):
                    yield response
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await context.abort_with_status(handler_error_status(error, method))

        return translated


def _with_requests_decoded(
    handler: grpc.RpcMethodHandler[Any, Any],
) -> grpc.RpcMethodHandler[Any, Any]:
    """The handler with a deserializer that never raises and behaviour that refuses what it
    could not decode (see `services.common.request_decoding`); each behaviour keeps its kind
    (coroutine or async generator), which the wrapping that follows reads."""
    kinds = (
        (handler.unary_unary, grpc.unary_unary_rpc_method_handler, False),
        (handler.unary_stream, grpc.unary_stream_rpc_method_handler, False),
        (handler.stream_unary, grpc.stream_unary_rpc_method_handler, True),
        (handler.stream_stream, grpc.stream_stream_rpc_method_handler, True),
    )
    for behavior, make_handler, streamed_requests in kinds:
        if behavior is None:
            continue
        async_behavior: Any = behavior
        decoded: Any = (
            _async_generator_decoded(async_behavior, streamed_requests)
            if inspect.isasyncgenfunction(async_behavior)
            else _coroutine_decoded(async_behavior, streamed_requests)
        )
        return make_handler(
            decoded,
            tolerant_deserializer(handler.request_deserializer),
            handler.response_serializer,
        )
    return handler


def _checked(request: Any, streamed: bool) -> Any:
    """The request, checked now (one message) or as it is read (a stream of them)."""
    if not streamed:
        require_decoded(request)
        return request
    if hasattr(request, "__aiter__"):
        return decoded_requests_async(request)
    # A reader/writer handler reads with context.read(), which sees the marker as it is.
    return request


def _coroutine_decoded(behavior: CoroutineBehavior, streamed: bool) -> CoroutineBehavior:
    async def decoded(request: Any, context: Context) -> Any:
        return await behavior(_checked(request, streamed), context)

    return decoded


def _async_generator_decoded(
    behavior: AsyncGeneratorBehavior, streamed: bool
) -> AsyncGeneratorBehavior:
    async def decoded(request: Any, context: Context) -> AsyncIterator[Any]:
        async for response in behavior(_checked(request, streamed), context):
            yield response

    return decoded


# Access: who may call what


class AioAccessInterceptor(AioBehaviorInterceptor):
    """Refuses a call its `CallGuard` refuses, before the handler sees it."""

    def __init__(self, guard: CallGuard) -> None:
        self._guard = guard

    def around_coroutine(self, method: str, behavior: CoroutineBehavior) -> CoroutineBehavior:
        async def guarded(request: Any, context: Context) -> Any:
            await self._admit(method, request, context)
            return await behavior(request, context)

        return guarded

    def around_async_generator(
        self, method: str, behavior: AsyncGeneratorBehavior
    ) -> AsyncGeneratorBehavior:
        async def guarded(request: Any, context: Context) -> AsyncIterator[Any]:
            await self._admit(method, request, context)
            async for response in behavior(request, context):
                yield response

        return guarded

    async def _admit(self, method: str, request: Any, context: Context) -> None:
        refusal = self._guard.refusal(
            method, request, context.auth_context(), context.invocation_metadata()
        )
        if refusal is not None:
            await context.abort_with_status(refusal)


# Observation: access log and metrics


class AioCallObservingInterceptor(AioBehaviorInterceptor):
    """Tells each observer about every call once it has completed."""

    def __init__(self, observers: Sequence[CallObserver]) -> None:
        self._observers = CallObservers(observers)

    def around_coroutine(self, method: str, behavior: CoroutineBehavior) -> CoroutineBehavior:
        async def observed(request: Any, context: Context) -> Any:
            started_s = time.perf_counter()
            ending = CallEnding.RAISED
            try:
                response = await behavior(request, context)
                ending = CallEnding.RETURNED
                return response
            except ABANDONING_EXCEPTIONS:
                ending = CallEnding.ABANDONED
                raise
            finally:
                self._notify(method, request, context, started_s, ending)

        return observed

    def around_async_generator(
        self, method: str, behavior: AsyncGeneratorBehavior
    ) -> AsyncGeneratorBehavior:
        async def observed(request: Any, context: Context) -> AsyncIterator[Any]:
            started_s = time.perf_counter()
            ending = CallEnding.RAISED
            try:
                async for response in behavior(request, context):
                    yield response
                ending = CallEnding.RETURNED
            except ABANDONING_EXCEPTIONS:
                ending = CallEnding.ABANDONED
                raise
            finally:
                self._notify(method, request, context, started_s, ending)

        return observed

    def _notify(
        self, method: str, request: Any, context: Context, started_s: float, ending: CallEnding
    ) -> None:
        code = final_code(
            _status_code(context.code()),
            ending,
            caller_gone=context.cancelled(),
            time_remaining_s=context.time_remaining(),
        )
        self._observers.notify(
            method, code, started_s, request, context.invocation_metadata() or (), context.peer()
        )


# grpc.aio keeps a chosen code as the core's number; the sync API has the enum.
_STATUS_CODE_BY_NUMBER = {status_code.value[0]: status_code for status_code in grpc.StatusCode}


def _status_code(code: Any) -> grpc.StatusCode | None:
    if code is None or isinstance(code, grpc.StatusCode):
        return code
    return _STATUS_CODE_BY_NUMBER.get(code, grpc.StatusCode.UNKNOWN)
