"""Fixtures for the score service's integration tests: a real ledger on SQLite with the Taiwan
sample replayed into it, and a real score server on 127.0.0.1, both in this process.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from sesame.ledger.v1 import ledger_service_pb2 as ledger_pb, ledger_service_pb2_grpc
from sesame.score.v1 import score_service_pb2_grpc

from services.common.aio_server import AioSesameServer, create_aio_server
from services.common.server import create_server
from services.datasets.replayer import replay_csv
from services.ledger.app import build_ledger
from services.ledger.settings import LedgerSettings
from services.ledger.storage.migrate import upgrade
from services.score.adapters.model_files import MODELS_ROOT, REPOSITORY_ROOT
from services.score.app import Score, build_score
from services.score.settings import ScoreSettings
from tests.support.aio import AioServerThread

TAIWAN_SAMPLE = REPOSITORY_ROOT / "tests" / "fixtures" / "taiwan_sample.csv"
SERVING_MODEL_VERSION = "1.2.0"
CALL_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RunningLedger:
    address: str
    channel: grpc.Channel

    def record_consent(self, user_id: str, state: int) -> ledger_pb.Consent:
        """Grants (or withdraws) the user's consent to be scored: the replayed sample's users
        have it; any other user a test scores needs it."""
        return (
            ledger_service_pb2_grpc.LedgerServiceStub(self.channel)
            .RecordConsent(
                ledger_pb.RecordConsentRequest(
                    request_id=f"consent-{uuid.uuid4().hex}", user_id=user_id, state=state
                ),
                timeout=CALL_TIMEOUT_S,
            )
            .consent
        )

    def grant_consent(self, user_id: str) -> None:
        self.record_consent(user_id, ledger_pb.CONSENT_STATE_GRANTED)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLedger]:
    """A ledger on a fresh SQLite file, with the Taiwan sample replayed into it."""
    database_url = f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.db'}"
    upgrade(database_url)
    settings = LedgerSettings(
        database_url=database_url, port=0, watch_poll_interval_s=0.05, grace_period_s=0.5
    )
    built = build_ledger(settings)
    created = create_server(settings, [built.registration])
    created.server.start()
    address = f"127.0.0.1:{created.port}"
    with grpc.insecure_channel(address) as channel:
        replay_csv(TAIWAN_SAMPLE, channel, progress=False)
        yield RunningLedger(address, channel)
    built.service.begin_shutdown()
    created.server.stop(0).wait()
    built.close()


@pytest.fixture
def models_root(tmp_path: Path) -> Path:
    """A models directory of the test's own, holding a copy of the committed model."""
    root = tmp_path / "models"
    shutil.copytree(MODELS_ROOT / SERVING_MODEL_VERSION, root / SERVING_MODEL_VERSION)
    return root


@dataclass
class ScoreServer:
    score: Score
    created: AioSesameServer
    server_thread: AioServerThread
    channel: grpc.Channel
    stub: score_service_pb2_grpc.ScoreServiceStub

    def start_serving(self) -> None:
        """Loads the model and reports SERVING, as the process does once it has started."""
        self.server_thread.run(self.score.start_serving(self.created))

    def stop(self) -> None:
        self.channel.close()
        self.server_thread.run(self.created.server.stop(0))
        self.server_thread.close()
        self.score.close()


ScoreServerFactory = Callable[..., ScoreServer]


@pytest.fixture
def start_score_server(ledger: RunningLedger, models_root: Path) -> Iterator[ScoreServerFactory]:
    """Builds and starts score servers; `warm=False` leaves the model unloaded."""
    started: list[ScoreServer] = []

    def start(*, warm: bool = True, ledger_address: str | None = None) -> ScoreServer:
        settings = ScoreSettings(
            port=0,
            ledger_address=ledger_address or ledger.address,
            models_directory=models_root,
            model_version=SERVING_MODEL_VERSION,
            grace_period_s=0.5,
            ledger_deadline_s=1.0,
        )
        score = build_score(settings)
        server_thread = AioServerThread()
        created = server_thread.run(create_aio_server(settings, [score.registration]))
        server_thread.run(created.server.start())
        channel = grpc.insecure_channel(f"127.0.0.1:{created.port}")
        server = ScoreServer(
            score, created, server_thread, channel, score_service_pb2_grpc.ScoreServiceStub(channel)
        )
        started.append(server)
        if warm:
            server.start_serving()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def score_server(start_score_server: ScoreServerFactory) -> ScoreServer:
    return start_score_server()
