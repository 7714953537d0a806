import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import structlog

from services.common.logging import configure_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root_logger = logging.getLogger()
    handlers, level = root_logger.handlers[:], root_logger.level
    yield
    structlog.reset_defaults()
    root_logger.handlers, root_logger.level = handlers, level


def output_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_each_event_is_one_json_line_with_timestamp_level_event_and_service(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("ledger", "INFO")

    structlog.get_logger().info("account_opened", account_id="a-1")

    [line] = output_lines(capsys)
    assert line["event"] == "account_opened"
    assert line["level"] == "info"
    assert line["service"] == "ledger"
    assert line["account_id"] == "a-1"
    timestamp = datetime.fromisoformat(str(line["timestamp"]))
    assert timestamp.utcoffset() == timedelta(0)


def test_events_below_the_level_are_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("ledger", "WARNING")

    structlog.get_logger().info("account_opened")
    structlog.get_logger().warning("journal_lagged")

    assert [line["event"] for line in output_lines(capsys)] == ["journal_lagged"]


def test_standard_library_records_are_written_as_json_lines_too(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("score", "INFO")

    logging.getLogger("grpc._server").warning("something odd")

    [line] = output_lines(capsys)
    assert line["event"] == "something odd"
    assert line["level"] == "warning"
    assert line["service"] == "score"
    assert line["logger"] == "grpc._server"


def test_an_exception_is_logged_with_its_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("waiver", "INFO")

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger().exception("handler_crashed")

    [line] = output_lines(capsys)
    assert "RuntimeError: boom" in str(line["exception"])


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("ledger", "CHATTY")
