"""Who may call what: the access policy (`access_policy.toml`) and the guard every call of a
TLS server passes (`CallGuard`), on both runtimes (`interceptors`, `aio_interceptors`).

For each call the guard establishes the caller (`services.common.identity`: the client
certificate, or a platform's signed token), refuses a caller without one (UNAUTHENTICATED),
one the method does not admit (PERMISSION_DENIED) and one over its rate limit
(RESOURCE_EXHAUSTED, with a `google.rpc.RetryInfo` saying when to come back). Every refusal
carries an `ErrorInfo` reason in the `sesame` domain: CALLER_UNAUTHENTICATED, CALLER_NOT_ADMITTED,
CALLER_RATE_LIMITED.
"""

from __future__ import annotations

import math
import threading
import time
import tomllib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import grpc
import structlog
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.common.errors import ERROR_DOMAIN
from services.common.identity import Identity, TokenVerifier, Unauthenticated, caller_identity

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

ANY_CALLER = "*"
ANY_NAME = "*"


@dataclass(frozen=True)
class CallerRule:
    """One entry of a method's list: a kind, and a name, any name, or the name a request field
    holds."""

    kind: str  # ANY_CALLER for any caller with an identity
    name: str | None = None
    field_path: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> CallerRule:
        if text == ANY_CALLER:
            return cls(ANY_CALLER)
        kind, separator, name = text.partition("/")
        if not separator or not kind or not name:
            raise ValueError(f"{text!r} is not <kind>/<name>, <kind>/*, <kind>/{{field}} or *")
        if name == ANY_NAME:
            return cls(kind)
        if name.startswith("{") and name.endswith("}"):
            return cls(kind, field_path=tuple(name[1:-1].split(".")))
        return cls(kind, name=name)

    def admits(self, caller: Identity, request: object) -> bool:
        if self.kind == ANY_CALLER:
            return True
        if caller.kind != self.kind:
            return False
        if self.name is not None:
            return caller.name == self.name
        if not self.field_path:
            return True
        values = _field_values(request, self.field_path)
        return bool(values) and all(value == caller.name for value in values)


def _field_values(request: object, path: tuple[str, ...]) -> list[str]:
    """The request's values at `path` (every value of a repeated field); none for a request
    that is not a message (a stream of them, or bytes that did not decode)."""
    value: Any = request
    for name in path:
        if not isinstance(value, Message):
            return []
        value = getattr(value, name, None)
    if isinstance(value, str):
        return [value]
    if value is None or isinstance(value, Message):
        return []
    return [str(item) for item in value]


@dataclass(frozen=True)
class RateLimit:
    per_second: float
    burst: float


@dataclass(frozen=True)
class AccessPolicy:
    methods: Mapping[str, tuple[CallerRule, ...]]
    rate_limits: Mapping[str, RateLimit]

    @classmethod
    def load(cls, path: str = "") -> AccessPolicy:
        """The policy in `path`, or the bundled one for an empty path."""
        if path:
            text = Path(path).read_text(encoding="utf-8")
        else:
            text = (
                resources.files("services.common")
                .joinpath("access_policy.toml")
                .read_text(encoding="utf-8")
            )
        return cls.parse(text)

    @classmethod
    def parse(cls, text: str) -> AccessPolicy:
        document = tomllib.loads(text)
        methods = {
            method: tuple(CallerRule.parse(entry) for entry in entries)
            for method, entries in document.get("methods", {}).items()
        }
        rate_limits = {
            kind: RateLimit(float(limit["per_second"]), float(limit["burst"]))
            for kind, limit in document.get("rate_limits", {}).items()
        }
        return cls(methods, rate_limits)

    def admits(self, method: str, caller: Identity, request: object) -> bool:
        """`method` as the policy names it, or as gRPC does ("/package.Service/Method")."""
        rules = self.methods.get(method.lstrip("/"), ())
        return any(rule.admits(caller, request) for rule in rules)


class RateLimiter:
    """A token bucket per caller, of its kind's limit; the least recently seen callers are
    forgotten beyond `callers_max` (they start again with a full bucket)."""

    def __init__(self, limits: Mapping[str, RateLimit], callers_max: int = 100_000) -> None:
        self._limits = dict(limits)
        self._callers_max = callers_max
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after_s(self, caller: Identity, now_s: float | None = None) -> float:
        """0 when the call may go ahead (and counts), else how long until it could."""
        limit = self._limits.get(caller.kind)
        if limit is None:
            return 0.0
        now_s = time.monotonic() if now_s is None else now_s
        key = str(caller)
        with self._lock:
            tokens, last_s = self._buckets.pop(key, (limit.burst, now_s))
            tokens = min(limit.burst, tokens + (now_s - last_s) * limit.per_second)
            if tokens >= 1.0:
                self._remember(key, tokens - 1.0, now_s)
                return 0.0
            self._remember(key, tokens, now_s)
            return (1.0 - tokens) / limit.per_second

    def _remember(self, key: str, tokens: float, now_s: float) -> None:
        self._buckets[key] = (tokens, now_s)
        while len(self._buckets) > self._callers_max:
            self._buckets.popitem(last=False)


class CallGuard:
    """Decides whether a call goes ahead: None, or the status to refuse it with."""

    def __init__(self, policy: AccessPolicy, tokens: TokenVerifier | None) -> None:
        self._policy = policy
        self._tokens = tokens
        self._rate_limiter = RateLimiter(policy.rate_limits)

    def refusal(
        self,
        method: str,
        request: object,
        auth_context: Mapping[str, Any],
        metadata: Iterable[tuple[str, str | bytes]] | None,
    ) -> grpc.Status | None:
        """None when the call may go ahead; else the status that refuses it (and why)."""
        try:
            caller = caller_identity(auth_context, metadata, self._tokens)
        except Unauthenticated as error:
            log.info("call_unauthenticated", method=method)
            return _status(code_pb2.UNAUTHENTICATED, str(error), "CALLER_UNAUTHENTICATED", method)
        if not self._policy.admits(method, caller, request):
            log.info("call_not_admitted", method=method, caller_kind=caller.kind)
            return _status(
                code_pb2.PERMISSION_DENIED,
                f"a {caller.kind} caller may not call {method.lstrip('/')} on this request",
                "CALLER_NOT_ADMITTED",
                method,
            )
        retry_after_s = self._rate_limiter.retry_after_s(caller)
        if retry_after_s > 0:
            return _status(
                code_pb2.RESOURCE_EXHAUSTED,
                "too many calls from this caller; retry after the delay given",
                "CALLER_RATE_LIMITED",
                method,
                retry_after_s=retry_after_s,
            )
        return None


def call_guard(policy_file: str, token_public_key_file: str) -> CallGuard:
    return CallGuard(AccessPolicy.load(policy_file), TokenVerifier.from_file(token_public_key_file))


def _status(
    code: int, message: str, reason: str, method: str, *, retry_after_s: float = 0.0
) -> grpc.Status:
    details = [
        _packed(
            error_details_pb2.ErrorInfo(
                reason=reason, domain=ERROR_DOMAIN, metadata={"method": method}
            )
        )
    ]
    if retry_after_s > 0:
        whole_s = math.floor(retry_after_s)
        delay = duration_pb2.Duration(
            seconds=whole_s, nanos=min(999_999_999, math.ceil((retry_after_s - whole_s) * 1e9))
        )
        details.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=details))


def _packed(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
