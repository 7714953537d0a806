"""Consent to be scored, granted for many users at once through the ledger's RecordConsent.

The score service scores only users whose consent is recorded. A person grants it on their own
channel; an operator may record it for people whose consent was documented elsewhere (an import
of a data set, a partner's application form), which the access policy allows. This is what
such an import does: one RecordConsent per user, several at a time, each under a request id
derived from the user, so running it again changes nothing (consent granted already journals
nothing, and a retried request id is answered as the first time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import grpc
from sesame.ledger.v1 import ledger_service_pb2, ledger_service_pb2_grpc

CONSENT_THREADS_DEFAULT = 16
DEADLINE_S_DEFAULT = 10.0
ATTEMPTS_MAX = 10
BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 5.0
# UNAVAILABLE and DEADLINE_EXCEEDED are safe to retry: the request id makes a retry change
# nothing the first attempt changed. RESOURCE_EXHAUSTED is an operator over its rate limit
# (the access policy's, per server process): the import slows down to it.
_RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)

RecordConsentCall = Callable[..., ledger_service_pb2.RecordConsentResponse]


class ConsentRecorder(Protocol):
    """The one call of the ledger this needs (a `LedgerServiceStub`, or a fake in tests)."""

    # Named after the gRPC method, as the generated stub names it.
    @property
    def RecordConsent(self) -> RecordConsentCall: ...


def consent_request_id(request_id_prefix: str, user_id: str) -> str:
    """The request id a user's consent is granted under: the same for the same user and prefix,
    so a second run sends the same request."""
    return f"{request_id_prefix}{user_id}"


def grant_consent(
    channel_or_stub: grpc.Channel | ConsentRecorder,
    user_ids: Sequence[str],
    *,
    request_id_prefix: str = "consent-",
    deadline_s: float = DEADLINE_S_DEFAULT,
    threads: int = CONSENT_THREADS_DEFAULT,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Grants every user's consent to be scored; raises the ledger's error (a grpc.RpcError)
    when it refuses one, or stays unreachable after a few attempts."""
    stub: ConsentRecorder = (
        ledger_service_pb2_grpc.LedgerServiceStub(channel_or_stub)
        if isinstance(channel_or_stub, grpc.Channel)
        else channel_or_stub
    )

    def grant(user_id: str) -> None:
        request = ledger_service_pb2.RecordConsentRequest(
            request_id=consent_request_id(request_id_prefix, user_id),
            user_id=user_id,
            state=ledger_service_pb2.CONSENT_STATE_GRANTED,
        )
        for attempt in range(1, ATTEMPTS_MAX + 1):
            try:
                stub.RecordConsent(request, timeout=deadline_s)
                return
            except grpc.RpcError as error:
                code = error.code() if isinstance(error, grpc.Call) else None
                if code not in _RETRYABLE_CODES or attempt == ATTEMPTS_MAX:
                    raise
                sleep(min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2 ** (attempt - 1)))

    if len(user_ids) <= 1 or threads <= 1:
        for user_id in user_ids:
            grant(user_id)
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(user_ids))) as pool:
        # list() raises the first failure, after the calls already started have finished.
        list(pool.map(grant, user_ids))
