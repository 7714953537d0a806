"""The ledger as the score service reaches it for credit histories: GetCreditHistory over gRPC
(the entry stream that keeps its cache fresh is `services.common.history_watch`).

Every call carries a deadline. A ledger that cannot answer in time, or at all, becomes
`Unavailable` with reason LEDGER_UNAVAILABLE; the ledger's own message is not passed on.
"""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from google.protobuf import timestamp_pb2
from sesame.ledger.v1 import ledger_service_pb2, ledger_service_pb2_grpc

from services.common.errors import Unavailable
from services.score.adapters.ledger_history import credit_history_from_proto
from services.score.domain.consent import ConsentState
from services.score.service.ports import LedgerHistory

LEDGER_UNAVAILABLE = "LEDGER_UNAVAILABLE"
HISTORY_DEADLINE_S_DEFAULT = 2.0


class LedgerClient:
    """Reads credit histories from one ledger address."""

    def __init__(
        self, channel: grpc.Channel, *, history_deadline_s: float = HISTORY_DEADLINE_S_DEFAULT
    ) -> None:
        self._stub = ledger_service_pb2_grpc.LedgerServiceStub(channel)
        self._history_deadline_s = history_deadline_s

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


# A consent the ledger did not state (an older ledger) is no consent.
_CONSENT_BY_PROTO = {
    ledger_service_pb2.CONSENT_STATE_NOT_GIVEN: ConsentState.NOT_GIVEN,
    ledger_service_pb2.CONSENT_STATE_GRANTED: ConsentState.GRANTED,
    ledger_service_pb2.CONSENT_STATE_WITHDRAWN: ConsentState.WITHDRAWN,
}


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    timestamp = timestamp_pb2.Timestamp()
    timestamp.FromDatetime(moment.astimezone(UTC))
    return timestamp
