"""Every RPC of the three services, fed generated requests through the suite as `make run` starts
it (on SQLite, and on PostgreSQL among the slow suites): only documented answers, a healthy
suite, nothing half-written.

The requests come from the contracts themselves (`tests.support.message_strategies` reads each
method's request descriptor), so an RPC added to a contract is fuzzed without a line here, and
`test_every_rpc_has_a_strategy` fails for a field no strategy can generate. Three kinds of
request per RPC: generated from scratch (random and extreme values, huge repeated fields, odd
unicode, missing fields); a valid request with one or two fields replaced by generated values
(so the call gets past the first check and deeper into the service); and raw bytes, which may
not be a message of the request's type at all.

Documented means: OK, or a status code the service's contract names with a reason of its
`ErrorReason` enum; or RESOURCE_EXHAUSTED with no reason (gRPC's own, for a request over the
message size limit). Never INTERNAL or UNKNOWN; no deadline runs out on a unary call. After each
RPC's examples: every service reports SERVING, every chain of the ledger verifies, and every
hold the waiver placed belongs to an order the waiver knows.

`SESAME_FUZZ_EXAMPLES` (default 12) sets the examples per kind of request and RPC.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings, strategies as st
from sesame.ledger.v1 import error_reason_pb2 as ledger_reasons, ledger_service_pb2 as ledger_pb
from sesame.score.v1 import error_reason_pb2 as score_reasons, score_service_pb2 as score_pb
from sesame.waiver.v1 import error_reason_pb2 as waiver_reasons, waiver_service_pb2 as waiver_pb

from services.common.grpc_errors import error_details
from services.suite.launch import plaintext_suite
from services.waiver.service.orders import ledger_request_id
from tests.support.message_strategies import field_values, messages, set_field
from tests.support.suite import REPOSITORY_ROOT, launched_suite

EXAMPLES = int(os.environ.get("SESAME_FUZZ_EXAMPLES", "12"))
CALL_TIMEOUT_S = 60.0
STREAM_TIMEOUT_S = 2.0
STREAM_MESSAGES_READ = 3
MERCHANT_ID = "sesame-demo"
HOUR_S = 3600
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
# Bytes that are no message of any request type, besides Hypothesis's own.
MALFORMED_BYTES = (
    b"\x0a\x02\xff\xfe",  # field 1 as a string that is not UTF-8 (where it is a string)
    b"\x0a\x10ab",  # a length running past the end
    b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # a varint of eleven bytes
    b"\x0b",  # a group that never ends
    b"\x12\x03\x0a\x01\xff",  # a nested message whose string is not UTF-8
    b"\x07",  # field 0
    b"\xff" * 64,
)


@dataclass(frozen=True)
class Contract:
    """One service of the suite as its contract describes it."""

    name: str  # the suite's name for it: ledger, score, waiver
    module: Any  # the generated *_service_pb2 module
    reasons: EnumDescriptor
    proto_files: tuple[str, ...]

    @property
    def methods(self) -> list[MethodDescriptor]:
        (service,) = self.module.DESCRIPTOR.services_by_name.values()
        return list(service.methods)

    @property
    def documented_codes(self) -> set[grpc.StatusCode]:
        """The status codes the contract's comments name."""
        text = " ".join((REPOSITORY_ROOT / path).read_text() for path in self.proto_files)
        return {code for code in grpc.StatusCode if re.search(rf"\b{code.name}\b", text)}

    @property
    def reason_names(self) -> set[str]:
        return {value.name for value in self.reasons.values} - {"ERROR_REASON_UNSPECIFIED"}


CONTRACTS = (
    Contract(
        "ledger",
        ledger_pb,
        ledger_reasons.DESCRIPTOR.enum_types_by_name["ErrorReason"],
        (
            "protos/sesame/ledger/v1/ledger_service.proto",
            "protos/sesame/ledger/v1/error_reason.proto",
        ),
    ),
    Contract(
        "score",
        score_pb,
        score_reasons.DESCRIPTOR.enum_types_by_name["ErrorReason"],
        ("protos/sesame/score/v1/score_service.proto", "protos/sesame/score/v1/error_reason.proto"),
    ),
    Contract(
        "waiver",
        waiver_pb,
        waiver_reasons.DESCRIPTOR.enum_types_by_name["ErrorReason"],
        (
            "protos/sesame/waiver/v1/waiver_service.proto",
            "protos/sesame/waiver/v1/error_reason.proto",
        ),
    ),
)
RPCS = [(contract, method) for contract in CONTRACTS for method in contract.methods]


RPC_IDS = [method.name for _, method in RPCS]

# ----------------------------------------------------------------------------------------------
# The suite, and valid requests to start from


@dataclass
class FuzzedSuite:
    addresses: dict[str, str]
    channels: dict[str, grpc.Channel]
    seeds: dict[str, Message]  # a valid request per method name, where one is written


# On SQLite in `make test`; on PostgreSQL with the slow suites (`make test-slow`).
@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)]
)
def fuzzed_suite(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzedSuite]:
    overrides = {"SESAME_LEDGER_CHECKPOINT_INTERVAL_S": "1", **plaintext_suite()}
    if request.param == "postgresql":
        new_database: Callable[[], str] = request.getfixturevalue("postgres_database_factory")
        overrides["SESAME_LEDGER_DATABASE_URL"] = new_database()
        overrides["SESAME_WAIVER_DATABASE_URL"] = new_database()
    with launched_suite(tmp_path_factory.mktemp("fuzzed-suite"), overrides) as addresses:
        channels = {name: grpc.insecure_channel(address) for name, address in addresses.items()}
        try:
            yield FuzzedSuite(addresses, channels, valid_requests(channels))
        finally:
            for channel in channels.values():
                channel.close()


def _timestamp(offset_s: int) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=offset_s)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _cny(amount_minor: int) -> dict[str, Any]:
    return {"currency_code": "CNY", "amount_minor": amount_minor}


def valid_requests(channels: dict[str, grpc.Channel]) -> dict[str, Message]:
    """A valid request of most methods, over objects made here: a user with capacity, a hold,
    an obligation and an order."""
    user = f"fuzz-{uuid.uuid4().hex[:8]}"
    ledger = _unary(channels["ledger"], ledger_pb, "LedgerService")
    waiver = _unary(channels["waiver"], waiver_pb, "WaiverService")
    ledger("SetWaiverCapacity", request_id=f"{user}-cap", user_id=user, capacity=_cny(10**7))
    hold_id = ledger(
        "PlaceHold",
        request_id=f"{user}-hold",
        user_id=user,
        amount=_cny(5_000),
        expires_in="86400s",
        reference="fuzz",
    ).hold.hold_id
    obligation_id = ledger(
        "CreateObligation",
        request_id=f"{user}-obligation",
        user_id=user,
        amount_due=_cny(10_000),
        due_time=_timestamp(86_400),
    ).obligation.obligation_id
    defaulted_id = ledger(
        "CreateObligation",
        request_id=f"{user}-defaulted",
        user_id=user,
        amount_due=_cny(300),
        due_time=_timestamp(0),
    ).obligation.obligation_id
    ledger(
        "CloseObligation",
        request_id=f"{user}-defaulted-close",
        obligation_id=defaulted_id,
        outcome="OBLIGATION_OUTCOME_DEFAULTED",
    )
    # The user consents to be scored, or the waiver would refuse the order.
    ledger(
        "RecordConsent",
        request_id=f"{user}-consent",
        user_id=user,
        state="CONSENT_STATE_GRANTED",
    )
    order_no = f"{user}-order"
    time_range = {"start_time": _timestamp(0), "end_time": _timestamp(HOUR_S)}
    create = {
        "request_id": f"{order_no}-create",
        "merchant_id": MERCHANT_ID,
        "out_order_no": order_no,
        "user_id": user,
        "scenario_id": "bike",
        "risk_fund_type": "RISK_FUND_TYPE_DEPOSIT",
        "risk_amount": _cny(9_900),
        "time_range": time_range,
        "post_payments": [{"name": "ride", "amount": _cny(300), "count": 1}],
    }
    waiver("CreateOrder", **create)
    policy = waiver("GetScenarioPolicy", merchant_id=MERCHANT_ID, scenario_id="bike").policy
    order = {"merchant_id": MERCHANT_ID, "out_order_no": order_no}
    statement = {
        "period": {"year": 2024, "month": 5},
        "balance": _cny(1_000),
        "amount_paid": _cny(500),
        "repayment_status": "REPAYMENT_STATUS_REVOLVING",
    }
    features = [0.5] * _feature_count(channels["score"])
    written: dict[str, dict[str, Any]] = {
        # ledger
        "SetWaiverCapacity": {"user_id": user, "capacity": _cny(20_000), "reason": "fuzz"},
        "PlaceHold": {
            "user_id": user,
            "amount": _cny(100),
            "expires_in": "3600s",
            "reference": "fuzz",
        },
        "CaptureHold": {
            "hold_id": hold_id,
            "amount": _cny(100),
            "obligation": {"due_time": _timestamp(86_400), "purpose": "fee"},
        },
        "ReleaseHold": {"hold_id": hold_id, "fulfilled": True},
        "GetHold": {"hold_id": hold_id},
        "SweepExpiredHolds": {"max_holds": 10},
        "CreateObligation": {
            "user_id": user,
            "amount_due": _cny(300),
            "due_time": _timestamp(86_400),
            "purpose": "fee",
            "reference": "fuzz",
        },
        "RecordPayment": {
            "obligation_id": obligation_id,
            "amount": _cny(100),
            "paid_time": _timestamp(0),
        },
        "CloseObligation": {
            "obligation_id": obligation_id,
            "outcome": "OBLIGATION_OUTCOME_DEFAULTED",
            "close_time": _timestamp(0),
        },
        "ReduceObligation": {"obligation_id": obligation_id, "amount_due": _cny(9_000)},
        "GetObligation": {"obligation_id": obligation_id},
        "RecordPartnerStatements": {
            "reports": [
                {
                    "user_id": user,
                    "partner_id": "bank-1",
                    "credit_line": _cny(100_000),
                    "statements": [statement],
                }
            ]
        },
        "GetAccountSummary": {"user_id": user},
        "GetCreditHistory": {"user_id": user, "as_of_time": _timestamp(0), "max_statements": 6},
        "ListEntries": {"user_id": user, "page_size": 10},
        "VerifyChain": {"user_id": user},
        "GetCheckpointProof": {"user_id": user},
        "WatchEntries": {},
        "RecordConsent": {"user_id": user, "state": "CONSENT_STATE_WITHDRAWN"},
        "AttachStatement": {"user_id": user, "obligation_id": defaulted_id, "text": "fuzz"},
        # score
        "GetScore": {"user_id": user, "as_of_time": _timestamp(0)},
        "BatchGetScores": {"user_ids": [user, "u-1"], "as_of_time": _timestamp(0)},
        "ScoreFeatures": {"feature_values": features, "include_reasons": True},
        "StreamScoreFeatures": {"feature_values": features, "include_reasons": True},
        "GetModelInfo": {},
        "ReloadModel": {"model_version": ""},
        # waiver
        "CreateOrder": create | {"out_order_no": "fuzz-new"},
        "GetOrder": order,
        "ListOrders": {"merchant_id": MERCHANT_ID, "page_size": 5},
        "ModifyOrder": order | {"total_amount": _cny(100), "reason": "fuzz"},
        "CompleteOrder": order
        | {
            "total_amount": _cny(300),
            "end_time": _timestamp(0),
            "post_payments": [{"name": "ride", "amount": _cny(300), "count": 1}],
        },
        "CancelOrder": order | {"reason": "fuzz"},
        "SyncPayment": order | {"amount": _cny(300), "paid_time": _timestamp(0)},
        "PutScenarioPolicy": {"policy": json_format.MessageToDict(policy)},
        "GetScenarioPolicy": {"merchant_id": MERCHANT_ID, "scenario_id": "bike"},
        "ListScenarioPolicies": {"merchant_id": MERCHANT_ID},
    }
    seeds: dict[str, Message] = {}
    for _contract, method in RPCS:
        if method.name in written:
            seeds[method.name] = json_format.ParseDict(
                written[method.name], GetMessageClass(method.input_type)()
            )
    return seeds


def _unary(channel: grpc.Channel, module: Any, service: str) -> Callable[..., Any]:
    package = module.DESCRIPTOR.package

    def call(method: str, **fields: Any) -> Any:
        request = json_format.ParseDict(fields, getattr(module, f"{method}Request")())
        response_class = getattr(module, f"{method}Response")
        stub = channel.unary_unary(
            f"/{package}.{service}/{method}",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        return stub(request, timeout=CALL_TIMEOUT_S)

    return call


def _feature_count(channel: grpc.Channel) -> int:
    return len(_unary(channel, score_pb, "ScoreService")("GetModelInfo").feature_names)


# ----------------------------------------------------------------------------------------------
# Requests


@st.composite
def near_valid(draw: st.DrawFn, seed: Message) -> Message:
    """The seed, with a fresh request id and one or two fields (at any depth) replaced by a
    generated value or cleared."""
    message = type(seed)()
    message.CopyFrom(seed)
    if "request_id" in message.DESCRIPTOR.fields_by_name:
        message.request_id = f"fuzz-{draw(st.uuids()).hex}"
    for _ in range(draw(st.integers(1, 2))):
        places = list(_fields_within(message))
        if not places:
            break
        target, field = places[draw(st.integers(0, len(places) - 1))]
        if draw(st.integers(0, 4)) == 0:
            target.ClearField(field.name)
        else:
            set_field(target, field, draw(field_values(field)))
    return message


def _fields_within(message: Message) -> Iterator[tuple[Message, FieldDescriptor]]:
    """Every field of the message and of the (singular, set) messages within it."""
    for field in message.DESCRIPTOR.fields:
        yield message, field
        if (
            field.message_type is not None
            and not field.is_repeated
            and message.HasField(field.name)
        ):
            yield from _fields_within(getattr(message, field.name))
        elif (
            field.message_type is not None
            and field.is_repeated
            and not field.message_type.GetOptions().map_entry
        ):
            for element in list(getattr(message, field.name))[:2]:
                yield from _fields_within(element)


def request_messages(method: MethodDescriptor, seed: Message | None) -> st.SearchStrategy[Message]:
    generated = messages(method.input_type)
    return generated if seed is None else st.one_of(generated, near_valid(seed))


def request_bytes() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=512), st.sampled_from(MALFORMED_BYTES))


# ----------------------------------------------------------------------------------------------
# Calls


@dataclass(frozen=True)
class Answer:
    code: grpc.StatusCode
    reason: str
    details: str


def call(channel: grpc.Channel, method: MethodDescriptor, payloads: list[bytes]) -> Answer:
    """One call of `method` with the serialized request(s), as raw bytes both ways."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if method.client_streaming:
            responses = channel.stream_stream(path)(iter(payloads), timeout=CALL_TIMEOUT_S)
            for _ in responses:
                pass
        elif method.server_streaming:
            responses = channel.unary_stream(path)(payloads[0], timeout=STREAM_TIMEOUT_S)
            for read, _ in enumerate(responses, start=1):
                if read >= STREAM_MESSAGES_READ:
                    responses.cancel()
                    break
        else:
            channel.unary_unary(path)(payloads[0], timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as error:
        call_error: Any = error
        return Answer(call_error.code(), error_details(error).reason, call_error.details() or "")
    return Answer(grpc.StatusCode.OK, "", "")


def assert_documented(contract: Contract, method: MethodDescriptor, answer: Answer) -> None:
    where = f"{method.name} answered {answer.code.name} {answer.reason} {answer.details!r}"
    assert answer.code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), where
    if answer.code == grpc.StatusCode.OK:
        return
    if method.server_streaming and answer.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return  # a stream runs until its deadline
    if answer.code == grpc.StatusCode.RESOURCE_EXHAUSTED and not answer.reason:
        return  # gRPC's own: a request over the message size limit
    assert answer.code in contract.documented_codes, where
    assert answer.reason in contract.reason_names, where


# ----------------------------------------------------------------------------------------------
# What must hold after any input


def assert_suite_intact(suite: FuzzedSuite) -> None:
    for contract in CONTRACTS:
        (service,) = contract.module.DESCRIPTOR.services_by_name.values()
        health: Any = health_pb2_grpc.HealthStub(suite.channels[contract.name])
        status = health.Check(
            health_pb2.HealthCheckRequest(service=service.full_name), timeout=CALL_TIMEOUT_S
        ).status
        assert status == health_pb2.HealthCheckResponse.SERVING, contract.name
    ledger = _unary(suite.channels["ledger"], ledger_pb, "LedgerService")
    report = ledger("VerifyChain")
    assert report.intact, report.first_mismatch
    assert_every_waiver_hold_has_its_order(suite)


def assert_every_waiver_hold_has_its_order(suite: FuzzedSuite) -> None:
    """Every hold the waiver placed (its request ids start with "waiver:") is of an order the
    waiver lists: the orders of the merchant every valid order here is created for."""
    ledger = _unary(suite.channels["ledger"], ledger_pb, "LedgerService")
    waiver = _unary(suite.channels["waiver"], waiver_pb, "WaiverService")
    orders: list[Any] = []
    token = ""
    while True:
        page = waiver("ListOrders", merchant_id=MERCHANT_ID, page_size=100, page_token=token)
        orders.extend(page.orders)
        token = page.next_page_token
        if not token:
            break
    order_prefixes = {
        ledger_request_id(order.merchant_id, order.out_order_no, "").rsplit(":", 1)[0]
        for order in orders
    }
    token = ""
    while True:
        page = ledger("ListEntries", page_size=1000, page_token=token)
        for entry in page.entries:
            if entry.type == ledger_pb.ENTRY_TYPE_HOLD_PLACED and entry.request_id.startswith(
                "waiver:"
            ):
                prefix = entry.request_id.rsplit(":", 1)[0]
                assert prefix in order_prefixes, f"a hold of no order: {entry}"
        token = page.next_page_token
        if not token:
            break


# ----------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize(("contract", "method"), RPCS, ids=RPC_IDS)
def test_every_rpc_has_a_strategy(contract: Contract, method: MethodDescriptor) -> None:
    """Building the strategy fails (NoStrategy) for a field kind it cannot generate."""
    request_messages(method, None)
    assert contract.documented_codes, f"{contract.name}'s contract names no status code"


@pytest.mark.parametrize(("contract", "method"), RPCS, ids=RPC_IDS)
def test_generated_requests_get_documented_answers(
    fuzzed_suite: FuzzedSuite, contract: Contract, method: MethodDescriptor
) -> None:
    channel = fuzzed_suite.channels[contract.name]

    @FUZZ_SETTINGS
    @given(
        requests=st.lists(
            request_messages(method, fuzzed_suite.seeds.get(method.name)),
            min_size=1,
            max_size=3 if method.client_streaming else 1,
        )
    )
    def fuzz(requests: list[Message]) -> None:
        answer = call(channel, method, [request.SerializeToString() for request in requests])
        assert_documented(contract, method, answer)

    fuzz()
    assert_suite_intact(fuzzed_suite)


@pytest.mark.parametrize(("contract", "method"), RPCS, ids=RPC_IDS)
def test_raw_bytes_get_documented_answers(
    fuzzed_suite: FuzzedSuite, contract: Contract, method: MethodDescriptor
) -> None:
    channel = fuzzed_suite.channels[contract.name]

    @FUZZ_SETTINGS
    @given(payload=request_bytes())
    def fuzz(payload: bytes) -> None:
        answer = call(channel, method, [payload])
        assert_documented(contract, method, answer)

    fuzz()
    assert_suite_intact(fuzzed_suite)


def undecodable_requests(method: MethodDescriptor) -> list[bytes]:
    """Bytes no request of the method can be: a length running past the end, and, where the
    request has a string field, that field holding bytes that are not UTF-8."""
    payloads = [b"\x0a\x10ab"]
    strings = [
        field
        for field in method.input_type.fields
        if field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated
    ]
    if strings:
        payloads.append(_varint(strings[0].number << 3 | 2) + b"\x02\xff\xfe")
    return payloads


def _varint(value: int) -> bytes:
    encoded = bytearray()
    while value > 0x7F:
        encoded.append(value & 0x7F | 0x80)
        value >>= 7
    encoded.append(value)
    return bytes(encoded)


def test_undecodable_bytes_are_invalid_argument_on_every_rpc(fuzzed_suite: FuzzedSuite) -> None:
    for contract, method in RPCS:
        for payload in undecodable_requests(method):
            answer = call(fuzzed_suite.channels[contract.name], method, [payload])
            assert (answer.code, answer.reason) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "REQUEST_UNDECODABLE",
            ), f"{method.full_name} {payload!r}: {answer}"
