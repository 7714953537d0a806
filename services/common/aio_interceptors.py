"""Server interceptors for the asyncio gRPC server (grpc.aio): errors, access log and metrics.

The same two as the synchronous server's (`services.common.interceptors`), with the same
observers and the same translation of errors, for handlers that are coroutines or async
generators:

1. `AioCallObservingInterceptor` (outermost) times every call and hands a `CompletedCall` to
   its observers once the final status is known.
2. `AioErrorTranslationInterceptor` (innermost) turns a `SesameError` into its rich status and
   anything else into a generic INTERNAL, so no exception text ever reaches a caller.

A handler written in the reader/writer style (a coroutine for a streaming call, such as health
Watch) is wrapped as a coroutine: it ends when its stream does.
"""

from __future__ import annotations

import abc
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Never

import grpc
import structlog

from services.common.errors import SesameError, Unimplemented
from services.common.grpc_errors import to_rpc_status
from services.common.interceptors import (
    INTERNAL_ERROR_MESSAGE,
    CallObserver,
    CompletedCall,
    log_completed_call,
    record_call_metrics,
    request_id_of,
    tell_observers,
)

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

Context = grpc.aio.ServicerContext[Any, Any]
CoroutineBehavior = Callable[[Any, Context], Awaitable[Any]]
AsyncGeneratorBehavior = Callable[[Any, Context], AsyncIterator[Any]]


def default_aio_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The interceptors every asyncio Sesame server runs, outermost first."""
    return [
        AioCallObservingInterceptor([log_completed_call, record_call_metrics]),
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
    """Aborts with the rich status of a `SesameError`, or INTERNAL for anything else.

    An abort the servicer started itself passes through untouched, and so does cancellation
    (the caller went away: nobody is left to tell).
    """

    def around_coroutine(self, method: str, behavior: CoroutineBehavior) -> CoroutineBehavior:
        async def translated(request: Any, context: Context) -> Any:
            try:
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await _abort_with_translation(error, method, context)

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
                await _abort_with_translation(error, method, context)

        return translated


async def _abort_with_translation(error: Exception, method: str, context: Context) -> Never:
    if isinstance(error, NotImplementedError):
        # The generated base servicers raise it for every RPC a service has not built yet.
        error = Unimplemented(f"{method} is not implemented yet")
    if isinstance(error, SesameError):
        await context.abort_with_status(to_rpc_status(error))
    # Called from an except block, so the traceback goes to the log, never to the caller.
    log.exception("rpc_handler_crashed", method=method)
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_ERROR_MESSAGE)


# Observation: access log and metrics


class AioCallObservingInterceptor(AioBehaviorInterceptor):
    """Tells each observer about every call once it has completed."""

    def __init__(self, observers: Sequence[CallObserver]) -> None:
        self._observers = tuple(observers)

    def around_coroutine(self, method: str, behavior: CoroutineBehavior) -> CoroutineBehavior:
        async def observed(request: Any, context: Context) -> Any:
            started_s = time.perf_counter()
            returned = False
            try:
                response = await behavior(request, context)
                returned = True
                return response
            finally:
                self._notify(method, request, context, started_s, returned)

        return observed

    def around_async_generator(
        self, method: str, behavior: AsyncGeneratorBehavior
    ) -> AsyncGeneratorBehavior:
        async def observed(request: Any, context: Context) -> AsyncIterator[Any]:
            started_s = time.perf_counter()
            returned = False
            try:
                async for response in behavior(request, context):
                    yield response
                returned = True
            finally:
                self._notify(method, request, context, started_s, returned)

        return observed

    def _notify(
        self, method: str, request: Any, context: Context, started_s: float, returned: bool
    ) -> None:
        completed_call = CompletedCall(
            method=method,
            code=_final_code(context, returned),
            duration_s=time.perf_counter() - started_s,
            request_id=request_id_of(request, context.invocation_metadata() or ()),
            peer=context.peer(),
        )
        tell_observers(self._observers, completed_call)


def _final_code(context: Context, returned: bool) -> grpc.StatusCode:
    chosen_code = context.code()
    if chosen_code is not None:
        return _status_code(chosen_code)
    if context.cancelled():
        # The caller went away before the handler finished.
        remaining_s = context.time_remaining()
        if remaining_s is not None and remaining_s <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    # The code gRPC sends when the handler did not choose one.
    return grpc.StatusCode.OK if returned else grpc.StatusCode.UNKNOWN


# grpc.aio keeps a chosen code as the core's number; the sync API has the enum.
_STATUS_CODE_BY_NUMBER = {status_code.value[0]: status_code for status_code in grpc.StatusCode}


def _status_code(code: Any) -> grpc.StatusCode:
    if isinstance(code, grpc.StatusCode):
        return code
    return _STATUS_CODE_BY_NUMBER.get(code, grpc.StatusCode.UNKNOWN)
