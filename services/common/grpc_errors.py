"""Translation between `SesameError` and rich gRPC statuses (google.rpc.Status).

Server side: `handler_error_status(error, method)` is the status a caller sees for whatever a
handler raised, on either runtime (`to_rpc_status` for a `SesameError`), and
`to_status_message(error)` the same status as a message, for a contract that carries an error
inside an answer (one user's error in a batch, say). Client side: `error_details(rpc_error)` and
`status_details(status)` read back the reason and rejected field names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.common.errors import (
    ERROR_DOMAIN,
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SesameError,
    Unavailable,
    Unimplemented,
)

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

INTERNAL_ERROR_MESSAGE = "internal error"

# The one place that decides which status code each kind of error gets. A subclass not
# listed here gets the code of its nearest listed base class.
STATUS_CODE_BY_ERROR: Mapping[type[SesameError], grpc.StatusCode] = MappingProxyType(
    {
        SesameError: grpc.StatusCode.INTERNAL,
        InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
        NotFound: grpc.StatusCode.NOT_FOUND,
        AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
        FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
        Conflict: grpc.StatusCode.ABORTED,
        ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
        Unavailable: grpc.StatusCode.UNAVAILABLE,
        Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    }
)


def status_code_for(error: SesameError) -> grpc.StatusCode:
    for error_class in type(error).__mro__:
        if error_class in STATUS_CODE_BY_ERROR:
            return STATUS_CODE_BY_ERROR[error_class]
    raise AssertionError("unreachable: SesameError itself is in the table")


def to_rpc_status(error: SesameError) -> grpc.Status:
    """The status to abort with: code, message, ErrorInfo and, if any, BadRequest."""
    return rpc_status.to_status(to_status_message(error))


def to_status_message(error: SesameError) -> status_pb2.Status:
    """The google.rpc.Status of an error: code, message, ErrorInfo and, if any, BadRequest."""
    error_info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata
    )
    details = [_packed(error_info)]
    if error.field_violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=violation.field,
                    description=violation.description,
                    reason=violation.reason,
                )
                for violation in error.field_violations
            ]
        )
        details.append(_packed(bad_request))
    return status_pb2.Status(
        code=_numeric_code(status_code_for(error)), message=error.message, details=details
    )


@dataclass(frozen=True)
class _PlainStatus(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...] = ()


# What a caller sees of an error that is not a SesameError: nothing of its text.
INTERNAL_ERROR_STATUS: grpc.Status = _PlainStatus(grpc.StatusCode.INTERNAL, INTERNAL_ERROR_MESSAGE)


def handler_error_status(error: Exception, method: str) -> grpc.Status:
    """The status to abort with for an exception a handler raised, on either runtime.

    A `SesameError` becomes its rich status; NotImplementedError, which the generated base
    servicers raise for every RPC not built yet, becomes UNIMPLEMENTED; anything else is logged
    with its traceback and becomes a generic INTERNAL, so its text never reaches a caller. Call
    from the except block that caught `error`, so the log has the traceback.
    """
    if isinstance(error, NotImplementedError):
        error = Unimplemented(f"{method} is not implemented yet")
    if isinstance(error, SesameError):
        return to_rpc_status(error)
    log.exception("rpc_handler_crashed", method=method)
    return INTERNAL_ERROR_STATUS


class ErrorDetails(NamedTuple):
    """What a caller can branch on: the ErrorInfo reason and the rejected field names."""

    reason: str
    field_names: tuple[str, ...]


def error_details(rpc_error: grpc.RpcError) -> ErrorDetails:
    """Reason and field names from a failed call, synchronous or asyncio; empty when the
    status carries none."""
    if not isinstance(rpc_error, grpc.Call | grpc.aio.AioRpcError):
        return ErrorDetails("", ())
    # from_call reads only code(), details() and trailing_metadata(), which an asyncio call
    # error has too; its type stub names the synchronous Call alone.
    status: status_pb2.Status | None = rpc_status.from_call(rpc_error)  # type: ignore[arg-type]
    if status is None:
        return ErrorDetails("", ())
    return status_details(status)


def status_details(status: status_pb2.Status) -> ErrorDetails:
    """Reason and field names from a google.rpc.Status; empty when it carries none."""
    reason = ""
    field_names: list[str] = []
    for detail in status.details:
        error_info = error_details_pb2.ErrorInfo()
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(error_info):
            reason = error_info.reason
        elif detail.Unpack(bad_request):
            field_names.extend(violation.field for violation in bad_request.field_violations)
    return ErrorDetails(reason, tuple(field_names))


def _packed(message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _numeric_code(code: grpc.StatusCode) -> int:
    # grpc.StatusCode values are (number, name) pairs; google.rpc.Status wants the number.
    number: int = code.value[0]
    return number
