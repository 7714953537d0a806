"""The watch on the ledger's credit history entries (the score service's, the waiver's) ends
every so often without anything being wrong: at its own deadline (five minutes in production),
and when a ledger that ages its connections out (`SESAME_LEDGER_MAX_CONNECTION_AGE_S`, five
minutes in production) cuts the calls left on an old connection. Either way it is resumed at
once where it stopped. With those spans shortened to a fraction of a second, entries written
before, between and across many such ends each invalidate their user exactly once, none is
lost, nothing is reported as an interruption, and every watch says when it has caught up."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import structlog
from google.protobuf import timestamp_pb2
from sesame.ledger.v1 import ledger_service_pb2 as ledger_pb, ledger_service_pb2_grpc
from sesame.type.v1.money_pb2 import Money

from services.common.history_watch import CacheInvalidator, LedgerHistoryStream
from services.common.server import create_server
from services.ledger.app import build_ledger
from services.ledger.settings import LedgerSettings
from services.ledger.storage.migrate import upgrade
from tests.support.waiting import until

CALL_TIMEOUT_S = 10.0
WRITES = 40
WRITES_BETWEEN_ENDS = 8
WAIT_S = 20.0


@dataclass(frozen=True)
class WatchEnd:
    """How the watches end: the watch's own deadline, the ledger's connection age (0: never),
    and how long a watch must have run for its cut to be routine."""

    watch_deadline_s: float
    max_connection_age_s: float
    established_after_s: float


WATCH_ENDS = {
    "at-the-watch-deadline": WatchEnd(
        watch_deadline_s=0.25, max_connection_age_s=0.0, established_after_s=30.0
    ),
    # Connections live half a second (give or take a tenth) and their calls 0.2 s more.
    "when-the-ledger-ages-the-connection-out": WatchEnd(
        watch_deadline_s=60.0, max_connection_age_s=0.5, established_after_s=0.2
    ),
}


@pytest.fixture(params=sorted(WATCH_ENDS))
def watch_end(request: pytest.FixtureRequest) -> WatchEnd:
    return WATCH_ENDS[request.param]


@pytest.fixture
def ledger_address(tmp_path: Path, watch_end: WatchEnd) -> Iterator[str]:
    database_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(database_url)
    settings = LedgerSettings(
        database_url=database_url,
        port=0,
        watch_poll_interval_s=0.05,
        grace_period_s=0.2,
        max_connection_age_s=watch_end.max_connection_age_s,
    )
    built = build_ledger(settings)
    created = create_server(settings, [built.registration])
    created.server.start()
    try:
        yield f"127.0.0.1:{created.port}"
    finally:
        built.service.begin_shutdown()
        created.server.stop(0).wait()
        built.close()


def create_obligation(stub: ledger_service_pb2_grpc.LedgerServiceStub, user_id: str) -> None:
    due_time = timestamp_pb2.Timestamp()
    due_time.FromDatetime(datetime.now(UTC) + timedelta(days=30))
    stub.CreateObligation(
        ledger_pb.CreateObligationRequest(
            request_id=f"{user_id}-obligation",
            user_id=user_id,
            amount_due=Money(currency_code="CNY", amount_minor=1_000),
            due_time=due_time,
            purpose="renewal test",
        ),
        timeout=CALL_TIMEOUT_S,
        wait_for_ready=True,  # through the connection ageing, too
    )


def test_a_watch_that_ends_without_a_fault_is_resumed_losing_and_repeating_nothing(
    ledger_address: str, watch_end: WatchEnd
) -> None:
    invalidated: list[tuple[str, int]] = []
    lock = threading.Lock()

    def invalidate_user(user_id: str, global_sequence: int) -> None:
        with lock:
            invalidated.append((user_id, global_sequence))

    run = uuid.uuid4().hex[:8]
    users = [f"renewal-{run}-{index}" for index in range(WRITES)]
    with (
        grpc.insecure_channel(ledger_address) as writer_channel,
        grpc.insecure_channel(ledger_address) as watch_channel,
    ):
        stub = ledger_service_pb2_grpc.LedgerServiceStub(writer_channel)
        stream = LedgerHistoryStream(
            watch_channel, report_caught_up=True, watch_deadline_s=watch_end.watch_deadline_s
        )
        caught_up: list[bool] = []
        invalidator = CacheInvalidator(
            stream,
            invalidate_user,
            on_caught_up=lambda: caught_up.append(True),
            established_after_s=watch_end.established_after_s,
        )

        def ends() -> int:
            return invalidator.renewals + invalidator.resumptions

        with structlog.testing.capture_logs() as captured:
            invalidator.start()
            for index, user_id in enumerate(users):
                create_obligation(stub, user_id)
                if index % WRITES_BETWEEN_ENDS == WRITES_BETWEEN_ENDS - 1:
                    # The next writes go to the watch that follows the next end.
                    seen = ends()
                    assert until(lambda seen=seen: ends() > seen, WAIT_S)
            last_sequence = stub.GetCreditHistory(
                ledger_pb.GetCreditHistoryRequest(user_id=users[-1]),
                timeout=CALL_TIMEOUT_S,
                wait_for_ready=True,
            ).last_global_sequence
            all_seen = until(lambda: invalidator.last_global_sequence >= last_sequence, WAIT_S)
            invalidator.stop()

    assert all_seen
    with lock:
        sequences = [sequence for _, sequence in invalidated]
        written = Counter(user_id for user_id, _ in invalidated)
    assert written == Counter(users)  # every write invalidated its user, once
    assert sequences == sorted(set(sequences))  # no entry delivered twice, in journal order
    assert ends() >= WRITES // WRITES_BETWEEN_ENDS
    assert len(caught_up) >= ends()  # every watch said when it had caught up
    assert invalidator.interruptions == 0
    assert [line for line in captured if line["event"] == "entry_stream_interrupted"] == []
