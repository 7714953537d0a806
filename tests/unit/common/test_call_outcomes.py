"""What both runtimes decide alike about a finished call: its status code, and the status a
handler's exception becomes."""

from __future__ import annotations

import grpc
import pytest
import structlog
from google.rpc import error_details_pb2, status_pb2

from services.common.call_observation import CallEnding, final_code
from services.common.errors import NotFound
from services.common.grpc_errors import INTERNAL_ERROR_MESSAGE, handler_error_status

METHOD = "/sesame.testing.v1.Probe/Method"
SECRET = "password=hunter2 at db.internal"


def reason_of(status: grpc.Status) -> str:
    """The ErrorInfo reason of the rich status gRPC carries in the trailing metadata."""
    [rich_status] = [
        status_pb2.Status.FromString(value)
        for key, value in status.trailing_metadata
        if key == "grpc-status-details-bin"
    ]
    error_info = error_details_pb2.ErrorInfo()
    assert any(detail.Unpack(error_info) for detail in rich_status.details)
    return error_info.reason


@pytest.mark.parametrize(
    ("ending", "caller_gone", "time_remaining_s", "expected"),
    [
        (CallEnding.RETURNED, False, 5.0, grpc.StatusCode.OK),
        (CallEnding.RETURNED, False, None, grpc.StatusCode.OK),
        (CallEnding.RAISED, False, 5.0, grpc.StatusCode.UNKNOWN),
        # The caller went away: whatever the handler did after, nobody received it.
        (CallEnding.RETURNED, True, 5.0, grpc.StatusCode.CANCELLED),
        (CallEnding.RAISED, True, None, grpc.StatusCode.CANCELLED),
        (CallEnding.RAISED, True, 0.0, grpc.StatusCode.DEADLINE_EXCEEDED),
        # The runtime ended the handler for the caller's sake, whether or not it says so yet.
        (CallEnding.ABANDONED, False, 5.0, grpc.StatusCode.CANCELLED),
        (CallEnding.ABANDONED, False, -0.1, grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
)
def test_without_a_chosen_code_the_ending_and_the_caller_decide(
    ending: CallEnding,
    caller_gone: bool,
    time_remaining_s: float | None,
    expected: grpc.StatusCode,
) -> None:
    code = final_code(None, ending, caller_gone=caller_gone, time_remaining_s=time_remaining_s)

    assert code is expected


@pytest.mark.parametrize("ending", list(CallEnding))
def test_a_code_the_handler_chose_is_the_final_code(ending: CallEnding) -> None:
    code = final_code(grpc.StatusCode.NOT_FOUND, ending, caller_gone=True, time_remaining_s=0.0)

    assert code is grpc.StatusCode.NOT_FOUND


def test_a_sesame_error_becomes_its_rich_status() -> None:
    status = handler_error_status(NotFound("no such hold", reason="HOLD_NOT_FOUND"), METHOD)

    assert status.code is grpc.StatusCode.NOT_FOUND
    assert reason_of(status) == "HOLD_NOT_FOUND"


def test_an_rpc_not_built_yet_becomes_unimplemented() -> None:
    status = handler_error_status(NotImplementedError(), METHOD)

    assert status.code is grpc.StatusCode.UNIMPLEMENTED


def test_anything_else_is_logged_and_becomes_internal_without_its_text() -> None:
    with structlog.testing.capture_logs() as captured:
        try:
            raise RuntimeError(SECRET)
        except RuntimeError as error:
            status = handler_error_status(error, METHOD)

    assert status.code is grpc.StatusCode.INTERNAL
    assert status.details == INTERNAL_ERROR_MESSAGE
    assert SECRET not in repr(status.trailing_metadata)
    assert [(line["event"], line["method"]) for line in captured] == [
        ("rpc_handler_crashed", METHOD)
    ]
