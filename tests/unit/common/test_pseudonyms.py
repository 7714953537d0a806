"""User ids reach the access log only as pseudonyms."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
from sesame.ledger.v1 import ledger_service_pb2
from sesame.score.v1 import score_service_pb2
from structlog.testing import capture_logs

from services.common.call_observation import CallObservers, log_completed_call
from services.common.pseudonyms import configure_pseudonyms, pseudonym, pseudonymised


def logged_line(request: object) -> dict[str, object]:
    with capture_logs() as captured:
        CallObservers([log_completed_call]).notify(
            "/sesame.ledger.v1.LedgerService/SetWaiverCapacity",
            grpc.StatusCode.OK,
            time.perf_counter(),
            request,
            (),
            "ipv4:127.0.0.1:5000",
        )
    (line,) = captured
    return line


def test_a_users_id_is_logged_as_its_pseudonym_also_inside_the_request_id() -> None:
    request = ledger_service_pb2.SetWaiverCapacityRequest(
        request_id="capacity:u-12:1.1.0:600-649:1", user_id="u-12"
    )
    line = logged_line(request)
    assert "u-12" not in repr(line)
    assert line["users"] == [pseudonym("u-12")]
    assert line["request_id"] == f"capacity:{pseudonym('u-12')}:1.1.0:600-649:1"


def test_every_user_of_a_batch_is_a_pseudonym() -> None:
    line = logged_line(score_service_pb2.BatchGetScoresRequest(user_ids=["u-1", "u-12"]))
    assert line["users"] == [pseudonym("u-1"), pseudonym("u-12")]
    assert "u-1" not in repr(line)


def test_one_key_gives_one_pseudonym_and_another_key_another(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("a" * 64)
    configure_pseudonyms(str(key_file))
    first = pseudonym("u-7")
    assert pseudonym("u-7") == first and pseudonym("u-8") != first
    key_file.write_text("b" * 64)
    configure_pseudonyms(str(key_file))
    assert pseudonym("u-7") != first


def test_a_longer_id_is_not_broken_up_by_a_shorter_one() -> None:
    text = pseudonymised("u-1 and u-12", ["u-1", "u-12"])
    assert text == f"{pseudonym('u-1')} and {pseudonym('u-12')}"
