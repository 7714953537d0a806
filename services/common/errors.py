"""Errors that domain code raises to reject a request, with no dependency on gRPC.

Domain code raises these; the server's error interceptor turns them into a gRPC status
with `google.rpc.ErrorInfo` (and `google.rpc.BadRequest` for field violations). Anything
else a servicer raises reaches callers only as a generic INTERNAL error.

    raise InvalidArgument.for_field("amount", "must be positive")
    raise NotFound("account not found", reason="ACCOUNT_NOT_FOUND", metadata={"account": id})

`reason` is part of the API: callers branch on it, so it never changes once published.
`message` is shown to callers, so it must not contain secrets or internal details.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

ERROR_DOMAIN = "sesame"

# The shape google.rpc.ErrorInfo asks of a reason: UPPER_SNAKE_CASE, at most 63 characters.
_REASON_PATTERN = re.compile(r"[A-Z][A-Z0-9_]{0,61}[A-Z0-9]")


@dataclass(frozen=True)
class FieldViolation:
    """One request field that was rejected, and why: a description shown to the caller and a
    stable reason to branch on (BadRequest.FieldViolation.reason)."""

    field: str
    description: str
    reason: str = ""


class SesameError(Exception):
    """Base of every error that is safe to report to a caller as it is."""

    default_reason: ClassVar[str] = "UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        field_violations: Iterable[FieldViolation] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = self.default_reason if reason is None else reason
        if not _REASON_PATTERN.fullmatch(self.reason):
            raise ValueError(f"error reason must be UPPER_SNAKE_CASE, got {self.reason!r}")
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)
        self.metadata: dict[str, str] = dict(metadata or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, message={self.message!r})"


class InvalidArgument(SesameError):
    """The request itself is wrong, whatever the state of the system."""

    default_reason = "INVALID_ARGUMENT"

    @classmethod
    def for_field(
        cls,
        field: str,
        description: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Self:
        """One rejected field, with a message derived from it (the format `Violations` uses)."""
        reason = cls.default_reason if reason is None else reason
        return cls(
            f"{field}: {description}",
            reason=reason,
            field_violations=[FieldViolation(field, description, reason)],
            metadata=metadata,
        )


class NotFound(SesameError):
    default_reason = "NOT_FOUND"


class AlreadyExists(SesameError):
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(SesameError):
    """The system is not in a state that allows this request; retrying will not help."""

    default_reason = "FAILED_PRECONDITION"


class Conflict(SesameError):
    """A concurrent change won; the caller may retry the whole read-modify-write."""

    default_reason = "CONFLICT"


class ResourceExhausted(SesameError):
    default_reason = "RESOURCE_EXHAUSTED"


class Unavailable(SesameError):
    """A dependency is down for now; retrying later may succeed."""

    default_reason = "UNAVAILABLE"


class Unimplemented(SesameError):
    """The RPC is part of the contract but not built yet; nothing was done."""

    default_reason = "NOT_IMPLEMENTED"
