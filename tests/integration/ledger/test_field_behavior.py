"""The contract's field_behavior annotations say what the ledger enforces: every field of a
request is REQUIRED or OPTIONAL, and leaving out a REQUIRED one (and only such a one) is
INVALID_ARGUMENT naming it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.api import field_behavior_pb2
from google.protobuf import descriptor, duration_pb2, timestamp_pb2
from sesame.ledger.v1 import ledger_service_pb2 as pb
from sesame.type.v1 import money_pb2

from services.common.grpc_errors import error_details

REQUIRED = field_behavior_pb2.REQUIRED
OPTIONAL = field_behavior_pb2.OPTIONAL
# Types from other packages: their fields are not the ledger's to annotate.
FOREIGN_TYPES = {
    money_pb2.Money.DESCRIPTOR.full_name,
    timestamp_pb2.Timestamp.DESCRIPTOR.full_name,
    duration_pb2.Duration.DESCRIPTOR.full_name,
}
DUE = timestamp_pb2.Timestamp(seconds=1_767_312_000)


def cny(amount_minor: int) -> money_pb2.Money:
    return money_pb2.Money(currency_code="CNY", amount_minor=amount_minor)


# A valid request of each unary RPC with every field set that can be (WatchEntries, a stream,
# has one field, OPTIONAL). Ids name nothing: leaving out an OPTIONAL field may well be refused
# as NOT_FOUND, never as INVALID_ARGUMENT.
REQUESTS: dict[str, Any] = {
    "SetWaiverCapacity": pb.SetWaiverCapacityRequest(
        request_id="r-1", user_id="user-1", capacity=cny(5_000), reason="score 700"
    ),
    "PlaceHold": pb.PlaceHoldRequest(
        request_id="r-2",
        user_id="user-1",
        amount=cny(100),
        expires_in=duration_pb2.Duration(seconds=3600),
        reference="order-1",
    ),
    "CaptureHold": pb.CaptureHoldRequest(
        request_id="r-3",
        hold_id="hold-x",
        amount=cny(100),
        obligation=pb.ObligationTerms(due_time=DUE, purpose="fee"),
    ),
    "ReleaseHold": pb.ReleaseHoldRequest(request_id="r-4", hold_id="hold-x", fulfilled=True),
    "GetHold": pb.GetHoldRequest(hold_id="hold-x"),
    "SweepExpiredHolds": pb.SweepExpiredHoldsRequest(max_holds=5),
    "CreateObligation": pb.CreateObligationRequest(
        request_id="r-5",
        user_id="user-1",
        amount_due=cny(100),
        due_time=DUE,
        purpose="fee",
        reference="order-1",
    ),
    "RecordPayment": pb.RecordPaymentRequest(
        request_id="r-6", obligation_id="obligation-x", amount=cny(100), paid_time=DUE
    ),
    "CloseObligation": pb.CloseObligationRequest(
        request_id="r-7",
        obligation_id="obligation-x",
        outcome=pb.OBLIGATION_OUTCOME_DEFAULTED,
        close_time=DUE,
    ),
    "ReduceObligation": pb.ReduceObligationRequest(
        request_id="r-9", obligation_id="obligation-x", amount_due=cny(50), reason="discount"
    ),
    "GetObligation": pb.GetObligationRequest(obligation_id="obligation-x"),
    "RecordPartnerStatements": pb.RecordPartnerStatementsRequest(
        request_id="r-8",
        reports=[
            pb.PartnerReport(
                user_id="user-2",
                partner_id="bank-1",
                credit_line=cny(900_000),
                statements=[
                    pb.Statement(
                        period=pb.StatementPeriod(year=2005, month=4),
                        balance=cny(-10),
                        amount_paid=cny(10),
                        repayment_status=pb.REPAYMENT_STATUS_PAID_IN_FULL,
                    )
                ],
            )
        ],
    ),
    "GetAccountSummary": pb.GetAccountSummaryRequest(user_id="user-1"),
    "GetCreditHistory": pb.GetCreditHistoryRequest(
        user_id="user-1", as_of_time=DUE, max_statements=3
    ),
    "ListEntries": pb.ListEntriesRequest(user_id="user-1", page_size=10),
    "VerifyChain": pb.VerifyChainRequest(user_id="user-1"),
}


def behaviors(field: descriptor.FieldDescriptor) -> set[int]:
    return set(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


def request_fields(message: Any, path: str = "") -> Iterator[tuple[str, Any, str, set[int]]]:
    """(path, the message holding it, field name, behaviors) of every field of a request,
    nested messages included (a repeated one through its first element)."""
    for field in message.DESCRIPTOR.fields:
        field_path = f"{path}{field.name}"
        yield field_path, message, field.name, behaviors(field)
        if field.message_type is None or field.message_type.full_name in FOREIGN_TYPES:
            continue
        if field.is_repeated:
            for item in getattr(message, field.name)[:1]:
                yield from request_fields(item, f"{field_path}[0].")
        elif message.HasField(field.name):
            yield from request_fields(getattr(message, field.name), f"{field_path}.")


def without(request: Any, path: str) -> Any:
    """A copy of the request with the field at `path` cleared."""
    copy = type(request)()
    copy.CopyFrom(request)
    for index, (field_path, holder, name, _) in enumerate(request_fields(copy)):
        if field_path == path:
            holder.ClearField(name)
            return copy
        assert index < 1000
    raise AssertionError(f"no field {path}")


def invalid_fields(client: Any, method: str, request: Any) -> tuple[str, ...]:
    """The fields an INVALID_ARGUMENT names; empty when the call is not INVALID_ARGUMENT."""
    try:
        client.call(method, request)
    except grpc.RpcError as error:
        if error.code() is grpc.StatusCode.INVALID_ARGUMENT:
            return error_details(error).field_names
    return ()


@pytest.mark.parametrize("method", sorted(REQUESTS))
def test_a_request_is_refused_for_each_required_field_left_out_and_only_for_those(client, method):
    request = REQUESTS[method]
    assert invalid_fields(client, method, request) == ()

    for path, _, _, field_behaviors in list(request_fields(request)):
        assert field_behaviors in ({REQUIRED}, {OPTIONAL}), f"{method}: {path}"
        named = invalid_fields(client, method, without(request, path))
        if REQUIRED in field_behaviors:
            assert path in named, f"{method} without {path}"
        else:
            assert path not in named and not named, f"{method} without {path}: {named}"
