"""Reading requests into commands: durations and times to whole microseconds, and what protobuf
lets through but the ledger cannot read reported with the rest of the request's problems."""

from __future__ import annotations

import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from sesame.ledger.v1 import ledger_service_pb2 as pb
from sesame.type.v1 import money_pb2

from services.common.errors import InvalidArgument
from services.ledger.api import mapping


def place_hold(seconds: int, nanos: int = 0, **fields: str) -> pb.PlaceHoldRequest:
    """A PlaceHold request with the given expiry, and the given text fields changed."""
    request = pb.PlaceHoldRequest(
        request_id="r-1",
        user_id="u-1",
        amount=money_pb2.Money(currency_code="CNY", amount_minor=100),
    )
    for field, value in fields.items():
        setattr(request, field, value)
    request.expires_in.CopyFrom(duration_pb2.Duration(seconds=seconds, nanos=nanos))
    return request


def violations(read: object) -> tuple[str, list[tuple[str, str]]]:
    with pytest.raises(InvalidArgument) as invalid:
        read()  # type: ignore[operator]
    found = [(violation.field, violation.reason) for violation in invalid.value.field_violations]
    return invalid.value.reason, found


@pytest.mark.parametrize(
    ("seconds", "nanos", "microseconds"),
    [
        (3600, 0, 3_600_000_000),
        (1, 1_999, 1_000_001),
        (0, 999, 0),
        (-1, -1_500, -1_000_001),
    ],
)
def test_durations_are_read_to_whole_microseconds_towards_zero(seconds, nanos, microseconds):
    command = mapping.place_hold_command(place_hold(seconds, nanos))

    assert command.expires_in_us == microseconds


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(60, -1), (-60, 1), (0, 1_000_000_000), (315_576_000_001, 0)],
)
def test_a_duration_protobuf_does_not_allow_is_invalid(seconds, nanos):
    assert violations(lambda: mapping.place_hold_command(place_hold(seconds, nanos))) == (
        "DURATION_INVALID",
        [("expires_in", "DURATION_INVALID")],
    )


def test_times_are_read_to_whole_microseconds():
    request = pb.RecordPaymentRequest(
        request_id="r-1",
        obligation_id="o-1",
        amount=money_pb2.Money(currency_code="CNY", amount_minor=1),
        paid_time=timestamp_pb2.Timestamp(seconds=1_767_312_000, nanos=123_456_789),
    )

    assert mapping.record_payment_command(request).paid_at_us == 1_767_312_000_123_456


def test_an_unreadable_field_is_reported_where_validation_names_it():
    request = place_hold(60, -1, request_id="", reference="r" * 129)

    assert violations(lambda: mapping.place_hold_command(request)) == (
        "REQUEST_ID_REQUIRED",
        [
            ("request_id", "REQUEST_ID_REQUIRED"),
            ("expires_in", "DURATION_INVALID"),
            ("reference", "TEXT_TOO_LONG"),
        ],
    )


def test_a_readable_request_is_left_for_the_service_to_validate():
    # Validation runs once, in the service, for a request whose every field could be read.
    command = mapping.place_hold_command(place_hold(0, request_id=""))

    assert (command.request_id, command.expires_in_us) == ("", 0)
