"""Bad input gets INVALID_ARGUMENT naming the offending fields, never INTERNAL, and writes nothing:
one bad field at a time for every field of every request, several at once, and requests made of
generated values."""

from __future__ import annotations

import copy
import uuid

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from hypothesis import HealthCheck, given, settings, strategies as st
from sesame.ledger.v1 import ledger_service_pb2 as ledger_pb
from sesame.type.v1.money_pb2 import Money
from sesame.waiver.v1 import waiver_service_pb2 as pb

from services.common.grpc_errors import error_details

from .conftest import CALL_TIMEOUT_S, HOUR_US, MERCHANT_ID, timestamp

# Validation happens before storage is reached: one database is enough here (the flows run on both).
pytestmark = pytest.mark.parametrize("waiver_database_url", ["sqlite"], indirect=True)

DOCUMENTED_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.OK,
}


def money(currency: str = "CNY", amount: int = 9900) -> Money:
    return Money(currency_code=currency, amount_minor=amount)


def valid_create(now_us: int, user_id: str = "u-1") -> pb.CreateOrderRequest:
    return pb.CreateOrderRequest(
        request_id=f"r-{uuid.uuid4().hex}",
        merchant_id=MERCHANT_ID,
        out_order_no=f"o-{uuid.uuid4().hex[:12]}",
        user_id=user_id,
        scenario_id="bike",
        risk_fund_type=pb.RISK_FUND_TYPE_DEPOSIT,
        risk_amount=money(),
        time_range={"start_time": timestamp(now_us), "end_time": timestamp(now_us + HOUR_US)},
        post_payments=[pb.LineItem(name="ride", amount=money(amount=100), count=1)],
    )


def set_path(message, path: str, value) -> None:  # type: ignore[no-untyped-def]
    *parents, last = path.split(".")
    target = message
    for part in parents:
        name, _, index = part.partition("[")
        target = getattr(target, name)
        if index:
            target = target[int(index.rstrip("]"))]
    field = target.DESCRIPTOR.fields_by_name[last]
    if value is None:
        target.ClearField(last)
    elif field.message_type is not None:
        getattr(target, last).CopyFrom(value)
    else:
        setattr(target, last, value)


BAD_TIMESTAMPS = [
    timestamp_pb2.Timestamp(seconds=253_402_300_800),
    timestamp_pb2.Timestamp(seconds=0, nanos=-1),
    timestamp_pb2.Timestamp(seconds=-1),
    timestamp_pb2.Timestamp(seconds=1, nanos=1_000_000_000),
]
BAD_CREATE_FIELDS = [
    ("request_id", ""),
    ("request_id", " "),
    ("request_id", "x" * 129),
    ("request_id", "r\u00e9"),
    ("merchant_id", ""),
    ("merchant_id", "m\x00"),
    ("out_order_no", "o" * 65),
    ("out_order_no", ""),
    ("user_id", "u" * 129),
    ("user_id", "\u7528\u6237"),
    ("scenario_id", "s" * 65),
    ("risk_fund_type", 0),
    ("risk_fund_type", 99),
    ("risk_amount", None),
    ("risk_amount.amount_minor", 0),
    ("risk_amount.amount_minor", -1),
    ("risk_amount.amount_minor", 2**63 - 1),
    ("risk_amount.currency_code", "USD"),
    ("risk_amount.currency_code", "cny"),
    ("risk_amount.currency_code", ""),
    ("time_range", None),
    ("time_range.start_time", None),
    ("time_range.end_time", None),
    *[("time_range.start_time", value) for value in BAD_TIMESTAMPS],
    *[("time_range.end_time", value) for value in BAD_TIMESTAMPS],
    ("language_code", "fr"),
    ("post_payments[0].name", ""),
    ("post_payments[0].name", "n" * 65),
    ("post_payments[0].description", "d" * 257),
    ("post_payments[0].amount", None),
    ("post_payments[0].amount.amount_minor", -5),
    ("post_payments[0].amount.currency_code", "EUR"),
    ("post_payments[0].count", -1),
    ("post_payments[0].count", 101),
]


def field_of(path: str) -> str:
    """The field a violation names for a bad value at `path` (a Money's parts name themselves;
    an unset message names itself)."""
    return path


@pytest.fixture
def untouched(waiver):  # type: ignore[no-untyped-def]
    """Checks after the test that the waiver wrote no order and the ledger no entry."""
    ledger = waiver.suite.ledger

    def entry_count() -> int:
        count, token = 0, ""
        while True:
            page = ledger.ListEntries(
                ledger_pb.ListEntriesRequest(page_size=1000, page_token=token),
                timeout=CALL_TIMEOUT_S,
            )
            count += len(page.entries)
            token = page.next_page_token
            if not token:
                return count

    before = entry_count()
    yield
    assert entry_count() == before
    listed = waiver.stub.ListOrders(
        pb.ListOrdersRequest(merchant_id=MERCHANT_ID), timeout=CALL_TIMEOUT_S
    )
    assert list(listed.orders) == []


@pytest.mark.parametrize(("path", "value"), BAD_CREATE_FIELDS, ids=lambda v: repr(v)[:40])
def test_a_bad_field_of_create_order_is_named(waiver, untouched, path, value):
    request = valid_create(waiver.suite.clock.now_us())
    set_path(request, path, value)

    with pytest.raises(grpc.RpcError) as refused:
        waiver.stub.CreateOrder(request, timeout=CALL_TIMEOUT_S)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    named = error_details(refused.value).field_names
    assert any(
        path == name or name.startswith(path + ".") or path.startswith(name + ".") for name in named
    ), named


def test_every_bad_field_of_one_request_is_named(waiver, untouched):
    request = valid_create(waiver.suite.clock.now_us())
    request.user_id = ""
    request.risk_amount.amount_minor = -3
    request.language_code = "xx"
    request.time_range.end_time.CopyFrom(request.time_range.start_time)

    with pytest.raises(grpc.RpcError) as refused:
        waiver.stub.CreateOrder(request, timeout=CALL_TIMEOUT_S)

    assert set(error_details(refused.value).field_names) == {
        "user_id",
        "risk_amount.amount_minor",
        "language_code",
        "time_range.end_time",
    }


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"start": 0, "end": -HOUR_US}, "TIME_RANGE_INVALID"),  # ends in the past
        ({"start": 0, "end": 3 * 86_400_000_000}, "TIME_RANGE_INVALID"),  # longer than a bike ride
        (
            {"start": 360 * 86_400_000_000, "end": 360 * 86_400_000_000 + HOUR_US},
            "TIME_RANGE_INVALID",
        ),
    ],
)
def test_a_time_range_the_scenario_cannot_hold_is_invalid(waiver, untouched, change, reason):
    now_us = waiver.suite.clock.now_us()
    request = valid_create(now_us)
    request.time_range.start_time.CopyFrom(
        timestamp(now_us + change["start"] - (HOUR_US * 2 if change["end"] < 0 else 0))
    )
    request.time_range.end_time.CopyFrom(timestamp(now_us + change["end"]))

    with pytest.raises(grpc.RpcError) as refused:
        waiver.stub.CreateOrder(request, timeout=CALL_TIMEOUT_S)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(refused.value).reason == reason


def other_requests(now_us: int) -> list[tuple[str, object]]:
    key = {"merchant_id": MERCHANT_ID, "out_order_no": "o-missing"}
    return [
        (
            "CompleteOrder",
            pb.CompleteOrderRequest(
                request_id="r", total_amount=money(amount=0), end_time=timestamp(now_us), **key
            ),
        ),
        ("CancelOrder", pb.CancelOrderRequest(request_id="r", reason="why", **key)),
        (
            "SyncPayment",
            pb.SyncPaymentRequest(
                request_id="r", amount=money(), paid_time=timestamp(now_us), **key
            ),
        ),
        (
            "ModifyOrder",
            pb.ModifyOrderRequest(
                request_id="r", total_amount=money(amount=0), reason="why", **key
            ),
        ),
        ("GetOrder", pb.GetOrderRequest(**key)),
        ("ListOrders", pb.ListOrdersRequest(merchant_id=MERCHANT_ID)),
        (
            "GetScenarioPolicy",
            pb.GetScenarioPolicyRequest(merchant_id=MERCHANT_ID, scenario_id="bike"),
        ),
        ("ListScenarioPolicies", pb.ListScenarioPoliciesRequest(merchant_id=MERCHANT_ID)),
    ]


BAD_VALUES_BY_KIND = {
    "string": ["", " ", "x" * 200, "\x00", "\u00e9"],
    "int32": [-1, 2**31 - 1],
    "enum": [99],
}
SKIPPED = {"state_reason"}


def bad_variants(name: str, request):  # type: ignore[no-untyped-def]
    """One request per bad value of each scalar field, and per unset message field."""
    for field in request.DESCRIPTOR.fields:
        if field.message_type is not None:
            if not field.is_repeated and request.HasField(field.name):
                changed = copy.deepcopy(request)
                changed.ClearField(field.name)
                yield field.name, changed
            continue
        kind = {
            field.TYPE_STRING: "string",
            field.TYPE_INT32: "int32",
            field.TYPE_ENUM: "enum",
        }.get(field.type)
        for value in BAD_VALUES_BY_KIND.get(kind, []):
            changed = copy.deepcopy(request)
            setattr(changed, field.name, value)
            yield field.name, changed


def test_every_rpc_answers_bad_fields_with_a_documented_status(waiver, untouched):
    now_us = waiver.suite.clock.now_us()
    for name, request in other_requests(now_us):
        for field, changed in bad_variants(name, request):
            try:
                getattr(waiver.stub, name)(changed, timeout=CALL_TIMEOUT_S)
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                code = error.code()
            assert code in DOCUMENTED_CODES, (name, field, code)


def test_a_forged_page_token_is_invalid_not_internal(waiver, untouched):
    import base64
    import json

    for token in (
        "garbage",
        base64.urlsafe_b64encode(
            json.dumps(
                {"scope": {"merchant_id": MERCHANT_ID, "state": 0}, "after": [2**70, "x"]}
            ).encode()
        ).decode(),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            waiver.stub.ListOrders(
                pb.ListOrdersRequest(merchant_id=MERCHANT_ID, page_token=token),
                timeout=CALL_TIMEOUT_S,
            )
        assert error_details(refused.value).reason == "PAGE_TOKEN_INVALID"


def test_invalid_durations_in_a_policy_are_named(waiver):
    policy = waiver.stub.GetScenarioPolicy(
        pb.GetScenarioPolicyRequest(merchant_id=MERCHANT_ID, scenario_id="bike"),
        timeout=CALL_TIMEOUT_S,
    ).policy
    policy.grace_period.CopyFrom(duration_pb2.Duration(seconds=10, nanos=-5))
    policy.breach_period.CopyFrom(duration_pb2.Duration(seconds=10, nanos=2_000_000_000))
    policy.max_waiver_amount.amount_minor = 150  # not a whole yuan

    with pytest.raises(grpc.RpcError) as refused:
        waiver.stub.PutScenarioPolicy(
            pb.PutScenarioPolicyRequest(request_id="p-1", policy=policy), timeout=CALL_TIMEOUT_S
        )

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {
        "policy.grace_period",
        "policy.breach_period",
        "policy.max_waiver_amount.amount_minor",
    } <= set(error_details(refused.value).field_names)


text = st.text(max_size=140)
integers = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    request_id=text,
    merchant_id=text,
    out_order_no=text,
    user_id=text,
    scenario_id=text,
    risk_fund_type=st.integers(min_value=-5, max_value=10),
    currency=st.text(max_size=5),
    amount=integers,
    start=integers,
    end=integers,
    nanos=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    language=st.text(max_size=5),
)
def test_generated_create_requests_never_answer_internal(
    waiver,
    request_id,
    merchant_id,
    out_order_no,
    user_id,
    scenario_id,
    risk_fund_type,
    currency,
    amount,
    start,
    end,
    nanos,
    language,
):
    request = pb.CreateOrderRequest(
        request_id=request_id,
        merchant_id=merchant_id,
        out_order_no=out_order_no,
        user_id=user_id,
        scenario_id=scenario_id,
        risk_fund_type=risk_fund_type,
        risk_amount=Money(currency_code=currency, amount_minor=amount),
        language_code=language,
    )
    request.time_range.start_time.seconds = start
    request.time_range.end_time.seconds = end
    request.time_range.end_time.nanos = nanos
    try:
        waiver.stub.CreateOrder(request, timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as error:
        assert error.code() in DOCUMENTED_CODES | {grpc.StatusCode.UNAVAILABLE}, error.details()
