import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from services.common.errors import (
    ERROR_DOMAIN,
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SesameError,
    Unavailable,
)
from services.common.grpc_errors import (
    error_details,
    status_code_for,
    status_details,
    to_rpc_status,
    to_status_message,
)

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]


def rich_status_of(status: grpc.Status) -> status_pb2.Status:
    """The google.rpc.Status that gRPC carries in the trailing metadata."""
    for key, value in status.trailing_metadata:
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    raise AssertionError("no rich status in the trailing metadata")


def unpacked_error_info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo:
    error_info = error_details_pb2.ErrorInfo()
    assert any(detail.Unpack(error_info) for detail in status.details)
    return error_info


@pytest.mark.parametrize(
    ("error", "expected_code"),
    [
        (InvalidArgument("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (NotFound("missing"), grpc.StatusCode.NOT_FOUND),
        (AlreadyExists("twice"), grpc.StatusCode.ALREADY_EXISTS),
        (FailedPrecondition("not now"), grpc.StatusCode.FAILED_PRECONDITION),
        (Conflict("lost a race"), grpc.StatusCode.ABORTED),
        (ResourceExhausted("too much"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (Unavailable("down"), grpc.StatusCode.UNAVAILABLE),
        (SesameError("unclassified"), grpc.StatusCode.INTERNAL),
    ],
)
def test_each_error_class_maps_to_its_status_code(
    error: SesameError, expected_code: grpc.StatusCode
) -> None:
    assert status_code_for(error) == expected_code
    assert to_rpc_status(error).code == expected_code


def test_a_subclass_of_a_listed_error_gets_the_code_of_its_parent() -> None:
    class AccountNotFound(NotFound):
        default_reason = "ACCOUNT_NOT_FOUND"

    assert status_code_for(AccountNotFound("no such account")) == grpc.StatusCode.NOT_FOUND


def test_domain_error_becomes_invalid_argument_with_field_violation() -> None:
    error = InvalidArgument.for_field(
        "amount", "must be positive", reason="AMOUNT_NOT_POSITIVE", metadata={"amount": "-5"}
    )

    status = to_rpc_status(error)
    rich_status = rich_status_of(status)

    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    assert status.details == "amount: must be positive"
    assert rich_status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    error_info = unpacked_error_info(rich_status)
    assert error_info.reason == "AMOUNT_NOT_POSITIVE"
    assert error_info.domain == ERROR_DOMAIN == "sesame"
    assert dict(error_info.metadata) == {"amount": "-5"}
    bad_request = error_details_pb2.BadRequest()
    assert any(detail.Unpack(bad_request) for detail in rich_status.details)
    assert [
        (violation.field, violation.description) for violation in bad_request.field_violations
    ] == [("amount", "must be positive")]


def test_an_error_without_field_violations_carries_no_bad_request() -> None:
    rich_status = rich_status_of(to_rpc_status(NotFound("no such account")))

    assert len(rich_status.details) == 1
    assert unpacked_error_info(rich_status).reason == "NOT_FOUND"


def test_the_default_reason_is_the_error_kind() -> None:
    assert InvalidArgument("bad").reason == "INVALID_ARGUMENT"
    assert Conflict("lost a race").reason == "CONFLICT"


def test_several_field_violations_are_kept_in_order() -> None:
    error = InvalidArgument(
        "two fields are wrong",
        field_violations=[FieldViolation("a", "empty"), FieldViolation("b", "too long")],
    )

    assert [violation.field for violation in error.field_violations] == ["a", "b"]


@pytest.mark.parametrize("reason", ["lower_case", "Mixed_Case", "TRAILING_", "", "WITH SPACE"])
def test_a_reason_that_is_not_upper_snake_case_is_refused(reason: str) -> None:
    with pytest.raises(ValueError, match="UPPER_SNAKE_CASE"):
        NotFound("missing", reason=reason)


def test_an_error_inside_an_answer_is_the_status_a_call_would_fail_with() -> None:
    error = InvalidArgument(
        "two fields are wrong",
        reason="FIELD_REQUIRED",
        field_violations=[
            FieldViolation("a", "is required", "FIELD_REQUIRED"),
            FieldViolation("b", "too long", "ID_INVALID"),
        ],
    )

    message = to_status_message(error)

    assert message == rich_status_of(to_rpc_status(error))
    assert status_details(message) == ("FIELD_REQUIRED", ("a", "b"))


def test_error_details_reads_the_reason_and_fields_of_an_asyncio_call_error() -> None:
    rpc_status = to_rpc_status(
        InvalidArgument(
            "a field is wrong",
            reason="FIELD_REQUIRED",
            field_violations=[FieldViolation("user_id", "is required", "FIELD_REQUIRED")],
        )
    )
    error = grpc.aio.AioRpcError(
        rpc_status.code,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(*rpc_status.trailing_metadata),
        details=rpc_status.details,
    )

    assert error_details(error) == ("FIELD_REQUIRED", ("user_id",))


def test_error_details_is_empty_for_an_error_that_is_not_a_call() -> None:
    assert error_details(grpc.RpcError()) == ("", ())


def test_the_errors_module_does_not_import_grpc() -> None:
    # Domain code imports the errors; it must stay free of transport concerns.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, services.common.errors; assert 'grpc' not in sys.modules",
        ],
        cwd=REPOSITORY_ROOT,
        check=True,
    )
