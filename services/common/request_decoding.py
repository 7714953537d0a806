"""Requests that are not a valid message of their method's request type: INVALID_ARGUMENT.

gRPC deserializes a request before any handler or interceptor behaviour runs, and a deserializer
that raises makes the synchronous server answer INTERNAL ("Exception deserializing request!")
and the asyncio one UNKNOWN: the server's fault, to the caller, for bytes the caller sent. The
error interceptors of both runtimes (`services.common.interceptors`,
`services.common.aio_interceptors`) therefore give each handler a deserializer that never raises:
bytes that do not parse become `UNDECODABLE_REQUEST`, a marker the wrapped behaviour turns into
INVALID_ARGUMENT with reason REQUEST_UNDECODABLE (`require_decoded`), through the same error
translation as every other error. Every Sesame contract's ErrorReason enum lists the reason.

What this cannot reach (see the README): handlers the synchronous server runs off its worker
pool (`experimental_non_blocking`, such as health Watch), which the interceptors leave
unwrapped, and requests the server refuses before any handler is found (an unknown method, a
message over the size limit).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Final

from services.common.errors import InvalidArgument

REQUEST_UNDECODABLE: Final = "REQUEST_UNDECODABLE"

Deserializer = Callable[[bytes], Any]


class _UndecodableRequest:
    """The one value a tolerant deserializer gives for bytes that do not parse (never None,
    which the synchronous server would take for a failure of its own)."""

    def __repr__(self) -> str:
        return "UNDECODABLE_REQUEST"


UNDECODABLE_REQUEST: Final = _UndecodableRequest()


def tolerant_deserializer(deserializer: Deserializer | None) -> Deserializer | None:
    """`deserializer`, but giving `UNDECODABLE_REQUEST` instead of raising; None (bytes are
    passed as they are) stays None."""
    if deserializer is None:
        return None
    parse = deserializer

    def deserialize(serialized: bytes) -> Any:
        try:
            return parse(serialized)
        except Exception:
            # Protobuf's DecodeError, or anything a custom deserializer raises: the caller's
            # bytes are at fault, and what exactly is wrong with them is not worth a log line.
            return UNDECODABLE_REQUEST

    return deserialize


def require_decoded(request: object) -> None:
    """Raises INVALID_ARGUMENT (REQUEST_UNDECODABLE) for the marker of undecodable bytes."""
    if request is UNDECODABLE_REQUEST:
        raise InvalidArgument(
            "the request is not a valid protobuf message of the method's request type",
            reason=REQUEST_UNDECODABLE,
        )


def decoded_requests(requests: Iterator[Any]) -> Iterator[Any]:
    """A stream of requests that raises INVALID_ARGUMENT at the first undecodable one."""
    for request in requests:
        require_decoded(request)
        yield request


async def decoded_requests_async(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The same for grpc.aio's request streams."""
    async for request in requests:
        require_decoded(request)
        yield request
