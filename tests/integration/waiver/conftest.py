"""Fixtures for the waiver's integration tests: a real ledger (with the Taiwan sample replayed)
and a real score service as processes, started once for the module, and a waiver server in this
process over a database of its own per test, SQLite and PostgreSQL. All three read one clock
file the tests move forward (SESAME_*_CLOCK_FILE, for simulations and tests only)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
import pytest
from google.protobuf import timestamp_pb2
from sesame.ledger.v1 import ledger_service_pb2 as ledger_pb, ledger_service_pb2_grpc
from sesame.score.v1 import score_service_pb2, score_service_pb2_grpc
from sesame.type.v1.money_pb2 import Money
from sesame.waiver.v1 import waiver_service_pb2 as pb, waiver_service_pb2_grpc
from sqlalchemy.engine import make_url

from services.common.clock import ClockFile, FileClock
from services.common.server import create_server
from services.datasets import taiwan
from services.suite.launch import HOST, free_port, wait_until_serving
from services.waiver.app import build_waiver
from services.waiver.service.recent_scores import RecentScores
from services.waiver.settings import WaiverSettings
from services.waiver.storage.migrate import upgrade

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
TAIWAN_SAMPLE = REPOSITORY_ROOT / "tests" / "fixtures" / "taiwan_sample.csv"
MERCHANT_ID = "sesame-demo"
# Rows of the sample by how the committed model scores them on 2005-10-01: client 5 scores 563
# (probability of default 0.08), client 4 502, client 2325 350.
RELIABLE, MIDDLING, RISKY = 5, 4, 2325
CALL_TIMEOUT_S = 10.0
SECOND_US = 1_000_000
HOUR_US = 3600 * SECOND_US
START_US = int(taiwan.STATEMENTS_AS_OF.timestamp()) * SECOND_US


@dataclass
class Suite:
    """The ledger and the score service as processes, on one clock the test moves."""

    clock: ClockFile
    ledger: ledger_service_pb2_grpc.LedgerServiceStub
    scores: score_service_pb2_grpc.ScoreServiceStub
    ledger_address: str
    score_address: str

    def new_user(self, like_client_id: int, *, consents: bool = True) -> str:
        """A user of its own for one test, with the partner history of a row of the sample, who
        consents to be scored unless told otherwise."""
        row = next(
            row for row in taiwan.read_rows(TAIWAN_SAMPLE) if row.client_id == like_client_id
        )
        report = taiwan.to_partner_report(row)
        report.user_id = f"u-{like_client_id}-{uuid.uuid4().hex[:10]}"
        self.ledger.RecordPartnerStatements(
            ledger_pb.RecordPartnerStatementsRequest(request_id=report.user_id, reports=[report]),
            timeout=CALL_TIMEOUT_S,
        )
        if consents:
            self.record_consent(report.user_id, ledger_pb.CONSENT_STATE_GRANTED)
        return report.user_id

    def record_consent(self, user_id: str, state: int) -> ledger_pb.Consent:
        return self.ledger.RecordConsent(
            ledger_pb.RecordConsentRequest(
                request_id=f"consent-{uuid.uuid4().hex}", user_id=user_id, state=state
            ),
            timeout=CALL_TIMEOUT_S,
        ).consent

    def score_of(self, user_id: str) -> score_service_pb2.Score:
        return self.scores.GetScore(
            score_service_pb2.GetScoreRequest(user_id=user_id), timeout=CALL_TIMEOUT_S
        ).score


def _start(
    module: str, environment: dict[str, str], address: str, service: str
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", module],
        env=environment,
        cwd=REPOSITORY_ROOT,
        stdout=subprocess.DEVNULL,
    )
    wait_until_serving(address, service, process)
    return process


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    directory = tmp_path_factory.mktemp("suite")
    clock = ClockFile(directory / "clock", START_US)
    ledger_port, score_port = free_port(), free_port()
    ledger_address, score_address = f"{HOST}:{ledger_port}", f"{HOST}:{score_port}"
    environment = {
        **os.environ,
        "SESAME_LEDGER_PORT": str(ledger_port),
        "SESAME_LEDGER_PLAINTEXT": "true",
        "SESAME_SCORE_PLAINTEXT": "true",
        "SESAME_LEDGER_DATABASE_URL": f"sqlite:///{directory / 'ledger.db'}",
        "SESAME_LEDGER_CLOCK_FILE": str(clock.path),
        "SESAME_LEDGER_LOG_LEVEL": "WARNING",
        "SESAME_SCORE_PORT": str(score_port),
        "SESAME_SCORE_LEDGER_ADDRESS": ledger_address,
        "SESAME_SCORE_WORKERS": "1",
        "SESAME_SCORE_LOG_LEVEL": "WARNING",
    }
    processes = [
        _start("services.ledger", environment, ledger_address, "sesame.ledger.v1.LedgerService")
    ]
    try:
        processes.append(
            _start("services.score", environment, score_address, "sesame.score.v1.ScoreService")
        )
        ledger_channel = grpc.insecure_channel(ledger_address)
        score_channel = grpc.insecure_channel(score_address)
        yield Suite(
            clock,
            ledger_service_pb2_grpc.LedgerServiceStub(ledger_channel),
            score_service_pb2_grpc.ScoreServiceStub(score_channel),
            ledger_address,
            score_address,
        )
        ledger_channel.close()
        score_channel.close()
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


@pytest.fixture(params=["sqlite", "postgresql"])
def waiver_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty waiver database of its own for this test (on PostgreSQL, a schema of its
    own in the run's database, selected through the connection's search_path)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'waiver.db'}"
        upgrade(url)
        yield url
        return
    base_url = make_url(request.getfixturevalue("postgres_url"))
    schema = f"waiver_test_{uuid.uuid4().hex[:12]}"
    with _postgres(base_url) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    url = base_url.update_query_dict({"options": f"-csearch_path={schema}"})
    rendered = url.render_as_string(hide_password=False)
    upgrade(rendered)
    try:
        yield rendered
    finally:
        with _postgres(base_url) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _postgres(url):  # type: ignore[no-untyped-def]
    return psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
    )


@dataclass
class WaiverServer:
    stub: waiver_service_pb2_grpc.WaiverServiceStub
    suite: Suite
    sweep: object  # a callable: writes the time-driven changes now
    kept_scores: RecentScores

    def create(
        self,
        out_order_no: str,
        user_id: str,
        scenario_id: str = "bike",
        risk_yuan: int = 99,
        **fields,
    ):
        now_us = self.suite.clock.now_us()
        request = pb.CreateOrderRequest(
            request_id=f"create-{out_order_no}",
            merchant_id=MERCHANT_ID,
            out_order_no=out_order_no,
            user_id=user_id,
            scenario_id=scenario_id,
            risk_fund_type=pb.RISK_FUND_TYPE_DEPOSIT,
            risk_amount=yuan(risk_yuan),
            time_range={"start_time": timestamp(now_us), "end_time": timestamp(now_us + HOUR_US)},
            **fields,
        )
        return self.stub.CreateOrder(request, timeout=CALL_TIMEOUT_S).order


def yuan(amount: float) -> Money:
    return Money(currency_code="CNY", amount_minor=round(amount * 100))


def timestamp(moment_us: int) -> timestamp_pb2.Timestamp:
    seconds, microseconds = divmod(moment_us, SECOND_US)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=microseconds * 1000)


@pytest.fixture
def waiver(suite: Suite, waiver_database_url: str) -> Iterator[WaiverServer]:
    settings = WaiverSettings(
        port=0,
        database_url=waiver_database_url,
        ledger_address=suite.ledger_address,
        score_address=suite.score_address,
        sweep_interval_s=0,
        recovery_interval_s=0,
        grace_period_s=0.5,
        clock_file=str(suite.clock.path),
    )
    built = build_waiver(settings, FileClock(suite.clock.path))
    built.start()
    created = create_server(settings, [built.registration])
    created.server.start()
    channel = grpc.insecure_channel(f"{HOST}:{created.port}")
    yield WaiverServer(
        waiver_service_pb2_grpc.WaiverServiceStub(channel),
        suite,
        lambda: built.orders.sweep(),
        built.scores,
    )
    channel.close()
    created.server.stop(0).wait()
    built.close()
