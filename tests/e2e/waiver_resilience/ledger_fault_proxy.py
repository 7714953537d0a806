"""A gRPC proxy in front of the ledger that kills the waiver at a chosen boundary of a chosen
ledger call, so a crash test can place a crash exactly between two steps of the saga without any
hook in the waiver's code.

The proxy is a generic gRPC server: one `grpc.GenericRpcHandler` answers every method of
sesame.ledger.v1.LedgerService with a unary handler whose (de)serializers are the identity, so
requests and answers pass through as bytes, and forwards each call to the real ledger with the
caller's remaining deadline. An error answer goes back with its code, message and trailing
metadata (the google.rpc.Status details the waiver reads its reasons from).

`arm(method, boundary, matching)` sets one fault; the next call of that method (whose request
`matching` accepts, if given) that reaches the boundary fires it, once:

  BEFORE_FORWARDING   the call arrived and the ledger never saw it: the waiver has recorded the
                      step as pending and dies waiting for the ledger;
  AFTER_ANSWER        the ledger answered (successfully: it applied the step) and the waiver
                      dies before the answer reaches it.

Firing calls `on_fault` (the test's SIGKILL of the waiver) and returns only once it has
returned, so the waiver can do nothing more with the call. The fault keeps the request it fired
on, and the ledger's answer the waiver never got.
"""

from __future__ import annotations

import enum
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message
from sesame.ledger.v1 import ledger_service_pb2

SERVICE_NAME = "sesame.ledger.v1.LedgerService"
METHOD_PREFIX = f"/{SERVICE_NAME}/"
# Longer than any deadline the waiver sets: the caller's own deadline is what bounds a call.
FORWARD_TIMEOUT_MAX_S = 30.0
PROXY_THREADS = 32
# Metadata gRPC itself sets on a call; the rest (the caller's own) is forwarded.
_TRANSPORT_METADATA_PREFIXES = (":", "grpc-", "user-agent")


class Boundary(enum.Enum):
    BEFORE_FORWARDING = "before forwarding"
    AFTER_ANSWER = "after the ledger answered"


@dataclass
class Fault:
    """One armed fault; `fired` is set once it has fired, with the request it fired on (and,
    after the answer, the answer)."""

    method: str
    boundary: Boundary
    matching: Callable[[Message], bool] | None = None
    fired: threading.Event = field(default_factory=threading.Event)
    request: Message | None = None
    answer: Message | None = None


@dataclass(frozen=True)
class _ForwardedStatus(grpc.Status):  # type: ignore[misc]
    code: grpc.StatusCode
    details: str
    trailing_metadata: Sequence[tuple[str, str | bytes]]


class LedgerFaultProxy:
    def __init__(self, ledger_address: str, on_fault: Callable[[], None] | None = None) -> None:
        self.on_fault = on_fault
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._armed: Fault | None = None
        self._channel = grpc.insecure_channel(ledger_address)
        self._server = grpc.server(ThreadPoolExecutor(max_workers=PROXY_THREADS))
        self._server.add_generic_rpc_handlers((_ForwardEveryMethod(self),))
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=None).wait()
        self._channel.close()

    def arm(
        self,
        method: str,
        boundary: Boundary,
        matching: Callable[[Message], bool] | None = None,
    ) -> Fault:
        assert hasattr(ledger_service_pb2, f"{method}Request"), f"no ledger method {method}"
        fault = Fault(method, boundary, matching)
        with self._lock:
            assert self._armed is None, "one fault at a time"
            self._armed = fault
        return fault

    def disarm(self) -> None:
        with self._lock:
            self._armed = None

    def forward(self, full_method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        method = full_method.removeprefix(METHOD_PREFIX)
        with self._lock:
            self.calls[method] += 1
        if self._fire_if_armed(method, Boundary.BEFORE_FORWARDING, request, None):
            # The caller is dead; the ledger must never see this call.
            context.abort(grpc.StatusCode.UNAVAILABLE, "the caller was killed")
        upstream = self._channel.unary_unary(full_method)
        remaining_s = context.time_remaining()
        timeout_s = FORWARD_TIMEOUT_MAX_S if remaining_s is None else remaining_s
        metadata = [
            (key, value)
            for key, value in context.invocation_metadata()
            if not key.startswith(_TRANSPORT_METADATA_PREFIXES)
        ]
        try:
            answer: bytes = upstream(
                request, timeout=min(timeout_s, FORWARD_TIMEOUT_MAX_S), metadata=metadata
            )
        except grpc.RpcError as error:
            call: Any = error
            context.abort_with_status(
                _ForwardedStatus(call.code(), call.details() or "", call.trailing_metadata() or ())
            )
            raise AssertionError("unreachable: abort_with_status raises") from error
        self._fire_if_armed(method, Boundary.AFTER_ANSWER, request, answer)
        return answer

    def _fire_if_armed(
        self, method: str, boundary: Boundary, request: bytes, answer: bytes | None
    ) -> bool:
        with self._lock:
            fault = self._armed
            if fault is None or (fault.method, fault.boundary) != (method, boundary):
                return False
            decoded = getattr(ledger_service_pb2, f"{method}Request").FromString(request)
            if fault.matching is not None and not fault.matching(decoded):
                return False
            # Taken under the lock, so that of two calls racing to the boundary one fires it.
            self._armed = None
        fault.request = decoded
        if answer is not None:
            fault.answer = getattr(ledger_service_pb2, f"{method}Response").FromString(answer)
        assert self.on_fault is not None, "a fault was armed with nothing to do"
        self.on_fault()
        fault.fired.set()
        return True


class _ForwardEveryMethod(grpc.GenericRpcHandler):
    """Every LedgerService method, unary to unary, as raw bytes."""

    def __init__(self, proxy: LedgerFaultProxy) -> None:
        self._proxy = proxy

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        full_method: str = handler_call_details.method  # type: ignore[attr-defined]
        if not full_method.startswith(METHOD_PREFIX):
            return None

        def forward(request: bytes, context: grpc.ServicerContext) -> bytes:
            return self._proxy.forward(full_method, request, context)

        # No (de)serializers: gRPC hands the handler the request's bytes and sends its bytes.
        return grpc.unary_unary_rpc_method_handler(forward)
