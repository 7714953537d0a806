"""Structured logging: one JSON object per line on standard output.

Every line has `timestamp` (ISO 8601, UTC), `level`, `event` and `service`. Events are
snake_case verbs in the past tense (`server_started`, `rpc_completed`), with details as
separate keys rather than formatted into the event::

    log = structlog.get_logger()
    log.info("account_opened", account_id=account_id)

Records from the standard `logging` module (gRPC and other libraries use it) are written
the same way, so the output stays parseable line by line.
"""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger


def configure_logging(service_name: str, level: str = "INFO") -> None:
    """Send structlog and standard-library logging to stdout as JSON lines."""
    level_number = _level_number(level)
    shared_processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _ServiceNameAdder(service_name),
    ]
    structlog.configure(
        processors=[
            *shared_processors,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level_number),
        # With no file given, each logger writes to the sys.stdout of the moment it is made,
        # and loggers are not cached, so redirected output (tests, tools) is honoured.
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    _route_standard_logging(shared_processors, level_number)


def _route_standard_logging(shared_processors: list[Processor], level_number: int) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared_processors, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root_logger = logging.getLogger()
    # Replacing rather than adding handlers keeps repeated configuration from doubling lines.
    root_logger.handlers = [handler]
    root_logger.setLevel(level_number)


def _level_number(level: str) -> int:
    level_numbers = logging.getLevelNamesMapping()
    try:
        return level_numbers[level.upper()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}") from None


class _ServiceNameAdder:
    """Adds the service's name to every line, so lines from several services can be mixed."""

    def __init__(self, service_name: str) -> None:
        self._service_name = service_name

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", self._service_name)
        return event_dict
