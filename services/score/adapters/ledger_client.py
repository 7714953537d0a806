"""The ledger as the score service reaches it: GetCreditHistory and WatchEntries over gRPC.

Every call carries a deadline. A ledger that cannot answer in time, or at all, becomes
`Unavailable` with reason LEDGER_UNAVAILABLE; the ledger's own message is not passed on.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
from google.protobuf import timestamp_pb2
from sesame.ledger.v1 import ledger_service_pb2, ledger_service_pb2_grpc

from services.common.errors import Unavailable
from services.score.adapters.ledger_history import credit_history_from_proto
from services.score.domain.consent import ConsentState
from services.score.service.ports import EntryNotice, LedgerHistory

LEDGER_UNAVAILABLE = "LEDGER_UNAVAILABLE"
HISTORY_DEADLINE_S_DEFAULT = 2.0
# A watch is a long call; its deadline makes it end and resume now and then, so a connection
# that died silently is noticed within this time. Reaching it is the watch's planned end, not a
# failure: `watch_entries` then simply ends, and the consumer resumes at once after the last
# entry it processed (`services.score.service.cache_invalidation`).
WATCH_DEADLINE_S_DEFAULT = 300.0


class LedgerClient:
    """Reads credit histories and the entry stream from one ledger address."""

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        history_deadline_s: float = HISTORY_DEADLINE_S_DEFAULT,
        watch_deadline_s: float = WATCH_DEADLINE_S_DEFAULT,
    ) -> None:
        self._stub = ledger_service_pb2_grpc.LedgerServiceStub(channel)
        self._history_deadline_s = history_deadline_s
        self._watch_deadline_s = watch_deadline_s
        self._watch_lock = threading.Lock()
        self._watch_call: grpc.RpcContext | None = None

    def get_credit_history(self, user_id: str, as_of: datetime | None) -> LedgerHistory:
        request = ledger_service_pb2.GetCreditHistoryRequest(user_id=user_id)
        if as_of is not None:
            request.as_of_time.CopyFrom(_timestamp(as_of))
        try:
            response = self._stub.GetCreditHistory(request, timeout=self._history_deadline_s)
        except grpc.RpcError as error:
            raise Unavailable(
                "the ledger could not be read; retry later", reason=LEDGER_UNAVAILABLE
            ) from error
        data_as_of = (
            response.as_of_time.ToDatetime(tzinfo=UTC) if response.HasField("as_of_time") else None
        )
        return LedgerHistory(
            credit_history_from_proto(response),
            data_as_of,
            response.last_global_sequence,
            _CONSENT_BY_PROTO.get(response.consent.state, ConsentState.NOT_GIVEN),
        )

    def watch_entries(self, after_global_sequence: int) -> Iterator[EntryNotice]:
        """Every entry after the given sequence, as they come, until the watch's deadline: the
        iterator then ends. Any other end (the ledger gone, shutting down, the call cancelled)
        raises."""
        request = ledger_service_pb2.WatchEntriesRequest(
            after_global_sequence=after_global_sequence
        )
        call = self._stub.WatchEntries(request, timeout=self._watch_deadline_s)
        with self._watch_lock:
            self._watch_call = call
        try:
            for response in call:
                entry = response.entry
                yield EntryNotice(
                    entry.global_sequence,
                    entry.user_id,
                    entry.type not in _ENTRIES_OUTSIDE_THE_CREDIT_HISTORY,
                )
        except grpc.RpcError as error:
            if isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return  # the watch's own deadline: its planned end
            raise
        finally:
            with self._watch_lock:
                self._watch_call = None
        # The ledger never ends a watch with OK; should it, the consumer must not take it for
        # the planned end and resume in a tight loop.
        raise Unavailable("the ledger ended the entry stream", reason=LEDGER_UNAVAILABLE)

    def cancel_watch(self) -> None:
        with self._watch_lock:
            if self._watch_call is not None:
                self._watch_call.cancel()


# A consent the ledger did not state (an older ledger) is no consent.
_CONSENT_BY_PROTO = {
    ledger_service_pb2.CONSENT_STATE_NOT_GIVEN: ConsentState.NOT_GIVEN,
    ledger_service_pb2.CONSENT_STATE_GRANTED: ConsentState.GRANTED,
    ledger_service_pb2.CONSENT_STATE_WITHDRAWN: ConsentState.WITHDRAWN,
}

# What GetCreditHistory does not answer: holds (a capture's obligation has an entry of its own
# kind), the waiver capacity, and the ledger's signed checkpoints (on its own chain, "$ledger").
# Any other kind, including one this code does not know yet, changes the history: a consent
# granted or withdrawn above all, which must drop the user's cached scores at once.
_ENTRIES_OUTSIDE_THE_CREDIT_HISTORY = frozenset(
    {
        ledger_service_pb2.ENTRY_TYPE_CAPACITY_SET,
        ledger_service_pb2.ENTRY_TYPE_HOLD_PLACED,
        ledger_service_pb2.ENTRY_TYPE_HOLD_RELEASED,
        ledger_service_pb2.ENTRY_TYPE_HOLD_EXPIRED,
        ledger_service_pb2.ENTRY_TYPE_CHECKPOINT_SIGNED,
    }
)


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    timestamp = timestamp_pb2.Timestamp()
    timestamp.FromDatetime(moment.astimezone(UTC))
    return timestamp
