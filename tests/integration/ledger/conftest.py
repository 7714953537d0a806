"""Fixtures for the ledger's integration tests: a fresh database per test (SQLite and
PostgreSQL), a real gRPC server on 127.0.0.1 with a fake clock, and a small client.

Fresh databases are cheap: SQLite gets a copy of a file migrated once per run; PostgreSQL gets a
schema of its own in the run's database, created from the migration's SQL script.
"""

from __future__ import annotations

import io
import itertools
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from alembic import command
from google.protobuf import timestamp_pb2
from sesame.ledger.v1 import ledger_service_pb2 as pb, ledger_service_pb2_grpc
from sesame.type.v1 import money_pb2
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from services.common.grpc_errors import error_details
from services.common.server import create_server
from services.ledger.adapters.checkpoint_keys import create_signing_key
from services.ledger.app import Ledger, build_ledger
from services.ledger.domain.checkpoints import Checkpoint
from services.ledger.settings import LedgerSettings
from services.ledger.storage.migrate import alembic_config, upgrade
from tests.support.clock import FakeClock

CALL_TIMEOUT_S = 10.0
CURRENCY = "CNY"


# ----------------------------------------------------------------------------------------------
# Databases


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    template = tmp_path_factory.mktemp("ledger-template") / "ledger.db"
    upgrade(f"sqlite:///{template}")
    return template


@pytest.fixture(scope="session")
def postgres_schema_script() -> str:
    """The migration as one SQL script (Alembic's offline mode), to create a schema quickly.

    The real, online migration is tested on its own in test_storage_schema.py.
    """
    config = alembic_config("postgresql+psycopg://")
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    return str(config.output_buffer.getvalue())


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty ledger database of its own for this test.

    PostgreSQL: a schema of its own in the run's database, selected through the connection's
    search_path. (A database per test would be simpler, but dropping a database forces a
    checkpoint, which costs about a second each.)
    """
    if request.param == "sqlite":
        database = tmp_path / "ledger.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), database)
        yield f"sqlite:///{database}"
        return
    base_url = make_url(request.getfixturevalue("postgres_url"))
    script = request.getfixturevalue("postgres_schema_script")
    schema = f"ledger_test_{uuid.uuid4().hex[:12]}"
    with _postgres_connection(base_url) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        admin.execute(f'SET search_path TO "{schema}"')
        admin.execute(script)
    url = base_url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with _postgres_connection(base_url) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no ledger schema at all, for migration tests."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    base_url = make_url(request.getfixturevalue("postgres_url"))
    schema = f"ledger_empty_{uuid.uuid4().hex[:12]}"
    with _postgres_connection(base_url) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        url = base_url.update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with _postgres_connection(base_url) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _postgres_connection(url: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        autocommit=True,
    )


@pytest.fixture
def database(ledger_database_url: str) -> Iterator[Engine]:
    """Direct access to the test's database, as an operator (or an intruder) would have."""
    engine = create_engine(ledger_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def is_postgresql(ledger_database_url: str) -> bool:
    return ledger_database_url.startswith("postgresql")


# ----------------------------------------------------------------------------------------------
# The ledger and its server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def checkpoint_key_files(tmp_path: Path) -> tuple[Path, Path]:
    """A checkpoint signing key of this test's own, and its public half."""
    key_file, public_key_file = tmp_path / "checkpoint-key.pem", tmp_path / "checkpoint-key.pub"
    create_signing_key(key_file, public_key_file)
    return key_file, public_key_file


@pytest.fixture
def checkpoint_log(tmp_path: Path) -> Path:
    return tmp_path / "checkpoints.jsonl"


@pytest.fixture
def ledger_settings(
    ledger_database_url: str, checkpoint_key_files: tuple[Path, Path], checkpoint_log: Path
) -> LedgerSettings:
    # Checkpoints are signed when a test asks (`LedgerClient.sign_checkpoint`), never on a timer.
    return LedgerSettings(
        database_url=ledger_database_url,
        port=0,
        database_pool_size=4,
        watch_poll_interval_s=0.05,
        grace_period_s=0.5,
        checkpoint_key_file=str(checkpoint_key_files[0]),
        checkpoint_log_file=str(checkpoint_log),
    )


@pytest.fixture
def ledger(ledger_settings: LedgerSettings, clock: FakeClock) -> Iterator[Ledger]:
    built = build_ledger(ledger_settings, clock=clock)
    yield built
    built.close()


@pytest.fixture
def server(ledger_settings: LedgerSettings, ledger: Ledger) -> Iterator[Any]:
    created = create_server(ledger_settings, [ledger.registration])
    created.server.start()
    yield created
    ledger.service.begin_shutdown()
    created.server.stop(0).wait()


@pytest.fixture
def channel(server: Any) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as opened:
        yield opened


@pytest.fixture
def stub(channel: grpc.Channel) -> ledger_service_pb2_grpc.LedgerServiceStub:
    return ledger_service_pb2_grpc.LedgerServiceStub(channel)


@pytest.fixture
def client(
    stub: ledger_service_pb2_grpc.LedgerServiceStub,
    clock: FakeClock,
    database: Engine,
    ledger: Ledger,
) -> LedgerClient:
    assert ledger.checkpointer is not None
    return LedgerClient(stub, clock, database, ledger.checkpointer.sign_checkpoint)


# ----------------------------------------------------------------------------------------------
# A client with shortcuts for what tests do again and again


def money(amount_minor: int, currency_code: str = CURRENCY) -> money_pb2.Money:
    return money_pb2.Money(currency_code=currency_code, amount_minor=amount_minor)


class LedgerClient:
    """The generated stub plus shortcuts; every call has a deadline."""

    def __init__(
        self,
        stub: ledger_service_pb2_grpc.LedgerServiceStub,
        clock: FakeClock,
        database: Engine,
        sign_checkpoint: Callable[[], Checkpoint | None],
    ) -> None:
        self.stub = stub
        self.clock = clock
        self.database = database
        # Signs a checkpoint now, as the ledger's timer would (None when nothing is new).
        self.sign_checkpoint = sign_checkpoint
        self._request_numbers = itertools.count(1)

    def new_request_id(self) -> str:
        return f"request-{next(self._request_numbers)}"

    def call(self, method: str, request: Any, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        return getattr(self.stub, method)(request, timeout=timeout_s)

    def set_capacity(
        self, user_id: str, amount_minor: int, *, currency_code: str = CURRENCY
    ) -> pb.AccountSummary:
        request = pb.SetWaiverCapacityRequest(
            request_id=self.new_request_id(),
            user_id=user_id,
            capacity=money(amount_minor, currency_code),
            reason="test",
        )
        return self.call("SetWaiverCapacity", request).account

    def place_hold_request(
        self, user_id: str, amount_minor: int, *, expires_in_s: int = 3600, reference: str = ""
    ) -> pb.PlaceHoldRequest:
        request = pb.PlaceHoldRequest(
            request_id=self.new_request_id(),
            user_id=user_id,
            amount=money(amount_minor),
            reference=reference,
        )
        request.expires_in.seconds = expires_in_s
        return request

    def place_hold(self, user_id: str, amount_minor: int, **options: Any) -> pb.Hold:
        return self.call(
            "PlaceHold", self.place_hold_request(user_id, amount_minor, **options)
        ).hold

    def capture_request(
        self, hold_id: str, amount_minor: int, *, due_in_s: int | None = None, purpose: str = ""
    ) -> pb.CaptureHoldRequest:
        request = pb.CaptureHoldRequest(
            request_id=self.new_request_id(), hold_id=hold_id, amount=money(amount_minor)
        )
        if due_in_s is not None:
            request.obligation.purpose = purpose
            request.obligation.due_time.CopyFrom(self.timestamp_in(due_in_s))
        return request

    def capture(self, hold_id: str, amount_minor: int, **options: Any) -> pb.CaptureHoldResponse:
        return self.call("CaptureHold", self.capture_request(hold_id, amount_minor, **options))

    def release(self, hold_id: str, *, fulfilled: bool = False) -> pb.Hold:
        request = pb.ReleaseHoldRequest(
            request_id=self.new_request_id(), hold_id=hold_id, fulfilled=fulfilled
        )
        return self.call("ReleaseHold", request).hold

    def get_hold(self, hold_id: str) -> pb.Hold:
        return self.call("GetHold", pb.GetHoldRequest(hold_id=hold_id)).hold

    def create_obligation(
        self, user_id: str, amount_minor: int, *, due_in_s: int = 86_400, purpose: str = "fee"
    ) -> pb.Obligation:
        request = pb.CreateObligationRequest(
            request_id=self.new_request_id(),
            user_id=user_id,
            amount_due=money(amount_minor),
            purpose=purpose,
        )
        request.due_time.CopyFrom(self.timestamp_in(due_in_s))
        return self.call("CreateObligation", request).obligation

    def pay(self, obligation_id: str, amount_minor: int) -> pb.Obligation:
        request = pb.RecordPaymentRequest(
            request_id=self.new_request_id(),
            obligation_id=obligation_id,
            amount=money(amount_minor),
        )
        return self.call("RecordPayment", request).obligation

    def close_obligation(
        self, obligation_id: str, outcome: int, *, days_late: int = 0
    ) -> pb.Obligation:
        request = pb.CloseObligationRequest(
            request_id=self.new_request_id(),
            obligation_id=obligation_id,
            outcome=outcome,
            days_late=days_late,
        )
        return self.call("CloseObligation", request).obligation

    def reduce_request(
        self,
        obligation_id: str,
        amount_due_minor: int,
        *,
        reason: str = "discount",
        currency_code: str = CURRENCY,
    ) -> pb.ReduceObligationRequest:
        return pb.ReduceObligationRequest(
            request_id=self.new_request_id(),
            obligation_id=obligation_id,
            amount_due=money(amount_due_minor, currency_code),
            reason=reason,
        )

    def reduce(self, obligation_id: str, amount_due_minor: int, **options: Any) -> pb.Obligation:
        request = self.reduce_request(obligation_id, amount_due_minor, **options)
        return self.call("ReduceObligation", request).obligation

    def summary(self, user_id: str) -> pb.AccountSummary:
        return self.call("GetAccountSummary", pb.GetAccountSummaryRequest(user_id=user_id)).account

    def verify(
        self, user_id: str = "", timeout_s: float = CALL_TIMEOUT_S
    ) -> pb.VerifyChainResponse:
        return self.call("VerifyChain", pb.VerifyChainRequest(user_id=user_id), timeout_s)

    def sweep(self, max_holds: int = 0) -> pb.SweepExpiredHoldsResponse:
        return self.call("SweepExpiredHolds", pb.SweepExpiredHoldsRequest(max_holds=max_holds))

    def timestamp_in(self, seconds: int) -> timestamp_pb2.Timestamp:
        now_us = self.clock.now_us() + seconds * 1_000_000
        return timestamp_pb2.Timestamp(seconds=now_us // 1_000_000, nanos=now_us % 1_000_000 * 1000)

    money = staticmethod(money)

    @staticmethod
    def rejection(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str, tuple[str, ...]]:
        return rejection(call)

    # What the database holds, counted directly.

    def entry_count(self) -> int:
        return self._count("journal_entry")

    def stored_request_count(self) -> int:
        return self._count("request_record")

    def _count(self, table: str) -> int:
        with self.database.connect() as connection:
            return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def rejection(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str, tuple[str, ...]]:
    """Runs a call that must fail; its status code, ErrorInfo reason and BadRequest fields."""
    with pytest.raises(grpc.RpcError) as raised:
        call()
    details = error_details(raised.value)
    return raised.value.code(), details.reason, details.field_names
