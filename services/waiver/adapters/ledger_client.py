"""The ledger as the waiver reaches it: its mutations over gRPC, each with a deadline.

A ledger that cannot answer in time, or at all, becomes `LedgerUnavailable` (its own message is
never passed on); a hold refused for capacity becomes `CapacityExceeded`; any other refusal means
the waiver's record and the ledger's disagree, and becomes `LedgerRefused` naming the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import grpc
from google.protobuf import duration_pb2, timestamp_pb2
from sesame.ledger.v1 import ledger_service_pb2 as pb, ledger_service_pb2_grpc
from sesame.type.v1.money_pb2 import Money

from services.common.deadline import Deadline
from services.common.grpc_errors import error_details
from services.waiver.domain import reasons
from services.waiver.domain.lifecycle import ObligationOutcome
from services.waiver.service.ports import (
    AccountPosition,
    CapacityExceeded,
    LedgerRefused,
    LedgerUnavailable,
)

LEDGER_DEADLINE_S_DEFAULT = 2.0
ResponseT = TypeVar("ResponseT")
_CAPACITY_REFUSALS = frozenset({"INSUFFICIENT_CAPACITY", "CURRENCY_MISMATCH"})
_OUTCOMES = {
    ObligationOutcome.ON_TIME: pb.OBLIGATION_OUTCOME_ON_TIME,
    ObligationOutcome.LATE: pb.OBLIGATION_OUTCOME_LATE,
    ObligationOutcome.DEFAULTED: pb.OBLIGATION_OUTCOME_DEFAULTED,
}


class LedgerClient:
    def __init__(
        self,
        channel: grpc.Channel,
        currency_code: str,
        *,
        deadline_s: float = LEDGER_DEADLINE_S_DEFAULT,
    ) -> None:
        self._stub = ledger_service_pb2_grpc.LedgerServiceStub(channel)
        self._currency_code = currency_code
        self._deadline_s = deadline_s

    def _money(self, amount_minor: int) -> Money:
        return Money(currency_code=self._currency_code, amount_minor=amount_minor)

    def _call(
        self, method: Callable[..., ResponseT], request: object, deadline: Deadline
    ) -> ResponseT:
        timeout_s = deadline.timeout_s(self._deadline_s, reason=reasons.LEDGER_UNAVAILABLE)
        try:
            return method(request, timeout=timeout_s)
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            reason = error_details(error).reason
            if code == grpc.StatusCode.FAILED_PRECONDITION and reason in _CAPACITY_REFUSALS:
                raise CapacityExceeded(reason) from error
            if code in (
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.FAILED_PRECONDITION,
                grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.ABORTED,
            ) and reason not in ("", "STORAGE_CONTENDED"):
                raise LedgerRefused(reason) from error
            raise LedgerUnavailable(
                "the ledger could not be reached in time; retry with the same request_id",
                reason=reasons.LEDGER_UNAVAILABLE,
            ) from error

    def set_waiver_capacity(
        self, request_id: str, user_id: str, capacity_minor: int, reason: str, deadline: Deadline
    ) -> None:
        request = pb.SetWaiverCapacityRequest(
            request_id=request_id,
            user_id=user_id,
            capacity=self._money(capacity_minor),
            reason=reason,
        )
        self._call(self._stub.SetWaiverCapacity, request, deadline)

    def account_position(self, user_id: str, deadline: Deadline) -> AccountPosition:
        request = pb.GetAccountSummaryRequest(user_id=user_id)
        account = self._call(self._stub.GetAccountSummary, request, deadline).account
        return AccountPosition(account.waiver_capacity.amount_minor, account.available.amount_minor)

    def place_hold(
        self,
        request_id: str,
        user_id: str,
        amount_minor: int,
        expires_in_us: int,
        reference: str,
        deadline: Deadline,
    ) -> str:
        request = pb.PlaceHoldRequest(
            request_id=request_id,
            user_id=user_id,
            amount=self._money(amount_minor),
            expires_in=_duration(expires_in_us),
            reference=reference,
        )
        return self._call(self._stub.PlaceHold, request, deadline).hold.hold_id

    def capture_hold(
        self,
        request_id: str,
        hold_id: str,
        amount_minor: int,
        obligation_due_us: int,
        purpose: str,
        deadline: Deadline,
    ) -> str:
        request = pb.CaptureHoldRequest(
            request_id=request_id,
            hold_id=hold_id,
            amount=self._money(amount_minor),
            obligation=pb.ObligationTerms(due_time=_timestamp(obligation_due_us), purpose=purpose),
        )
        response = self._call(self._stub.CaptureHold, request, deadline)
        return response.obligation.obligation_id

    def release_hold(
        self, request_id: str, hold_id: str, fulfilled: bool, deadline: Deadline
    ) -> None:
        request = pb.ReleaseHoldRequest(request_id=request_id, hold_id=hold_id, fulfilled=fulfilled)
        self._call(self._stub.ReleaseHold, request, deadline)

    def record_payment(
        self,
        request_id: str,
        obligation_id: str,
        amount_minor: int,
        paid_at_us: int,
        deadline: Deadline,
    ) -> None:
        request = pb.RecordPaymentRequest(
            request_id=request_id,
            obligation_id=obligation_id,
            amount=self._money(amount_minor),
            paid_time=_timestamp(paid_at_us),
        )
        self._call(self._stub.RecordPayment, request, deadline)

    def adjust_obligation(
        self,
        request_id: str,
        obligation_id: str,
        amount_due_minor: int,
        reason: str,
        deadline: Deadline,
    ) -> None:
        request = pb.ReduceObligationRequest(
            request_id=request_id,
            obligation_id=obligation_id,
            amount_due=self._money(amount_due_minor),
            reason=reason,
        )
        self._call(self._stub.ReduceObligation, request, deadline)

    def close_obligation(
        self,
        request_id: str,
        obligation_id: str,
        outcome: ObligationOutcome,
        days_late: int,
        closed_at_us: int,
        deadline: Deadline,
    ) -> None:
        request = pb.CloseObligationRequest(
            request_id=request_id,
            obligation_id=obligation_id,
            outcome=_OUTCOMES[outcome],
            days_late=days_late,
            close_time=_timestamp(closed_at_us),
        )
        self._call(self._stub.CloseObligation, request, deadline)


def _timestamp(moment_us: int) -> timestamp_pb2.Timestamp:
    seconds, microseconds = divmod(moment_us, 1_000_000)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=microseconds * 1000)


def _duration(span_us: int) -> duration_pb2.Duration:
    seconds, microseconds = divmod(span_us, 1_000_000)
    return duration_pb2.Duration(seconds=seconds, nanos=microseconds * 1000)
