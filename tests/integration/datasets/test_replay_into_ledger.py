"""Replaying the Taiwan data set into a real ledger: every row comes back exactly from the user's
credit history, and replaying again changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from sesame.ledger.v1 import ledger_service_pb2, ledger_service_pb2_grpc

from services.common.server import create_server, stop_gracefully
from services.datasets import replay_cli as cli
from services.datasets.replayer import replay_csv
from services.datasets.taiwan import (
    TaiwanRow,
    credit_history_request,
    read_rows,
    row_values_from_history,
    to_credit_history,
    user_id_for,
)
from services.ledger.app import build_ledger
from services.ledger.settings import LedgerSettings
from services.ledger.storage.migrate import upgrade

REPOSITORY_ROOT = Path(__file__).resolve().parents[3]
SAMPLE_CSV = REPOSITORY_ROOT / "tests" / "fixtures" / "taiwan_sample.csv"
SAMPLE_ROWS = 8
STATEMENTS_PER_ROW = 6
# One credit line, six statements and the consent to be scored per user.
ENTRIES_PER_ROW = 1 + STATEMENTS_PER_ROW + 1

TRAIN_CSV_VARIABLE = "SESAME_TAIWAN_TRAIN_CSV"
TRAIN_CSV_CANDIDATES = (
    REPOSITORY_ROOT / "data" / "taiwan-credit" / "train.csv.gz",
    REPOSITORY_ROOT.parent / "shared" / "datasets" / "taiwan-credit" / "train.csv",
)
TRAIN_ROWS = 24_000
HISTORY_READERS = 8

CALL_DEADLINE_S = 30.0
VERIFY_DEADLINE_S = 60.0
ENTRY_PAGE_SIZE = 1000
# Far above any journal these tests write (the full data set is 24,000 users x 8 entries).
ENTRY_PAGES_MAX = 1000


# A real ledger to replay into


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty ledger database of this test's own."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        create_postgres_database: Callable[[], str] = request.getfixturevalue(
            "postgres_database_factory"
        )
        url = create_postgres_database()
    upgrade(url)
    return url


@dataclass(frozen=True)
class RunningLedger:
    """A served ledger: its address, a channel to it, and reads of what it holds."""

    address: str
    channel: grpc.Channel
    stub: ledger_service_pb2_grpc.LedgerServiceStub

    def credit_history(
        self, request: ledger_service_pb2.GetCreditHistoryRequest
    ) -> ledger_service_pb2.GetCreditHistoryResponse:
        return self.stub.GetCreditHistory(request, timeout=CALL_DEADLINE_S)

    def journal_entry_count(self) -> int:
        """Every entry in the journal, counted through ListEntries page by page."""
        count = 0
        page_token = ""
        for _ in range(ENTRY_PAGES_MAX):
            request = ledger_service_pb2.ListEntriesRequest(
                page_size=ENTRY_PAGE_SIZE, page_token=page_token
            )
            page = self.stub.ListEntries(request, timeout=CALL_DEADLINE_S)
            count += len(page.entries)
            page_token = page.next_page_token
            if not page_token:
                return count
        raise AssertionError(f"the journal has more than {ENTRY_PAGES_MAX} pages")

    def chain_is_intact(self) -> bool:
        request = ledger_service_pb2.VerifyChainRequest()
        return self.stub.VerifyChain(request, timeout=VERIFY_DEADLINE_S).intact


@pytest.fixture
def running_ledger(ledger_database_url: str) -> Iterator[RunningLedger]:
    """The ledger, as `python -m services.ledger` assembles it, serving on a free port."""
    settings = LedgerSettings(
        database_url=ledger_database_url, port=0, sweep_interval_s=0, grace_period_s=0.5
    )
    ledger = build_ledger(settings)
    created = create_server(settings, [ledger.registration])
    created.server.start()
    address = f"127.0.0.1:{created.port}"
    try:
        with grpc.insecure_channel(address) as channel:
            yield RunningLedger(
                address, channel, ledger_service_pb2_grpc.LedgerServiceStub(channel)
            )
    finally:
        stop_gracefully(created, settings.grace_period_s, on_stopping=ledger.service.begin_shutdown)
        ledger.close()


# Reading back


def histories_that_differ(ledger: RunningLedger, rows: Sequence[TaiwanRow]) -> list[str]:
    """Reads every row's history back, several at a time, and describes each one that differs."""
    with ThreadPoolExecutor(max_workers=HISTORY_READERS) as readers:
        found = readers.map(lambda row: history_difference(ledger, row), rows)
        return [difference for difference in found if difference]


def history_difference(ledger: RunningLedger, row: TaiwanRow) -> str:
    request = credit_history_request(user_id_for(row.client_id))
    history = ledger.credit_history(request)
    expected = to_credit_history(row)
    if row_values_from_history(history) != row.behaviour_values():
        return f"{request.user_id}: {row_values_from_history(history)} != {row.behaviour_values()}"
    # The values agree; the messages must too (no extra statement, no other currency).
    if list(history.statements) != list(expected.statements):
        return f"{request.user_id}: statements {list(history.statements)}"
    if history.credit_line != expected.credit_line:
        return f"{request.user_id}: credit line {history.credit_line}"
    return ""


def first_of(differences: Iterable[str], count: int = 3) -> str:
    return "\n".join(list(differences)[:count])


# The sample


def test_every_replayed_row_comes_back_exactly_from_its_credit_history(
    running_ledger: RunningLedger,
) -> None:
    summary = replay_csv(SAMPLE_CSV, running_ledger.channel, batch_size=3, progress=False)

    assert (summary.rows, summary.batches) == (SAMPLE_ROWS, 3)
    assert summary.statements_recorded == SAMPLE_ROWS * STATEMENTS_PER_ROW
    assert summary.credit_lines_recorded == SAMPLE_ROWS
    differences = histories_that_differ(running_ledger, list(read_rows(SAMPLE_CSV)))
    assert differences == []
    assert running_ledger.journal_entry_count() == SAMPLE_ROWS * ENTRIES_PER_ROW
    assert running_ledger.chain_is_intact()


def test_every_replayed_user_consents_to_be_scored_unless_asked_not_to(
    running_ledger: RunningLedger,
) -> None:
    rows = list(read_rows(SAMPLE_CSV))
    replay_csv(SAMPLE_CSV, running_ledger.channel, progress=False, grant_consents=False)
    assert {consent_of(running_ledger, row) for row in rows} == {
        ledger_service_pb2.CONSENT_STATE_NOT_GIVEN
    }

    replay_csv(SAMPLE_CSV, running_ledger.channel, batch_size=3, progress=False)

    assert {consent_of(running_ledger, row) for row in rows} == {
        ledger_service_pb2.CONSENT_STATE_GRANTED
    }
    assert running_ledger.journal_entry_count() == SAMPLE_ROWS * ENTRIES_PER_ROW


def consent_of(ledger: RunningLedger, row: TaiwanRow) -> int:
    return ledger.credit_history(credit_history_request(user_id_for(row.client_id))).consent.state


def test_replaying_the_same_file_again_sends_the_same_requests_and_changes_nothing(
    running_ledger: RunningLedger,
) -> None:
    first = replay_csv(SAMPLE_CSV, running_ledger.channel, batch_size=3, progress=False)
    entries_before = running_ledger.journal_entry_count()

    again = replay_csv(SAMPLE_CSV, running_ledger.channel, batch_size=3, progress=False)

    assert running_ledger.journal_entry_count() == entries_before
    # The same request ids get the responses stored for them, so the counts repeat the first
    # run's rather than saying "unchanged": the journal, not the summary, shows nothing changed.
    assert (again.statements_recorded, again.statements_unchanged) == (
        first.statements_recorded,
        first.statements_unchanged,
    )
    assert histories_that_differ(running_ledger, list(read_rows(SAMPLE_CSV))) == []


def test_replaying_again_in_other_batches_records_every_statement_as_unchanged(
    running_ledger: RunningLedger,
) -> None:
    replay_csv(SAMPLE_CSV, running_ledger.channel, batch_size=3, progress=False)
    entries_before = running_ledger.journal_entry_count()

    again = replay_csv(SAMPLE_CSV, running_ledger.channel, batch_size=5, progress=False)

    assert again.statements_recorded == 0
    assert again.statements_unchanged == SAMPLE_ROWS * STATEMENTS_PER_ROW
    assert again.credit_lines_recorded == 0
    assert running_ledger.journal_entry_count() == entries_before
    assert histories_that_differ(running_ledger, list(read_rows(SAMPLE_CSV))) == []


def test_the_command_replays_the_file_and_prints_a_summary(
    running_ledger: RunningLedger, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = [
        "--csv",
        str(SAMPLE_CSV),
        "--ledger",
        running_ledger.address,
        "--no-progress",
        "--plaintext",
    ]

    exit_code = cli.main([*arguments, "--batch-size", "4", "--deadline-s", "10"])

    assert exit_code == 0
    # The last line: the ledger, running in this process, logs its calls to stdout too.
    summary_line = capsys.readouterr().out.splitlines()[-1]
    assert summary_line.startswith(
        "replayed 8 rows in 2 batches: 48 statements recorded, 0 unchanged,"
        " 8 credit lines recorded,"
    )
    assert running_ledger.journal_entry_count() == SAMPLE_ROWS * ENTRIES_PER_ROW


def test_the_module_runs_as_a_command_and_a_second_run_changes_nothing(
    running_ledger: RunningLedger,
) -> None:
    command = [sys.executable, "-m", "services.datasets", "--csv", str(SAMPLE_CSV)]
    command += ["--ledger", running_ledger.address, "--plaintext"]
    # Runs the command from this checkout, whatever is installed.
    environment = os.environ | {"PYTHONPATH": str(REPOSITORY_ROOT)}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            cwd=REPOSITORY_ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )

    first = run()
    entries_after_first = running_ledger.journal_entry_count()
    second = run()

    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert "replayed 8 rows in 1 batches: 48 statements recorded" in first.stdout
    # The progress bar goes to stderr and counts rows.
    assert "8/8" in first.stderr
    assert entries_after_first == SAMPLE_ROWS * ENTRIES_PER_ROW
    assert running_ledger.journal_entry_count() == entries_after_first


def test_an_unreachable_ledger_fails_after_bounded_retries(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Port 9 (discard) has nothing listening on 127.0.0.1 in a test environment.
    exit_code = cli.main(
        [
            "--csv",
            str(SAMPLE_CSV),
            "--ledger",
            "127.0.0.1:9",
            "--deadline-s",
            "1",
            "--no-progress",
            "--plaintext",
        ]
    )

    assert exit_code == 1
    error = capsys.readouterr().err
    assert "still answered UNAVAILABLE after 5 attempts" in error
    assert "nothing was recorded" in error


# The full training split


def train_csv() -> Path:
    configured = os.environ.get(TRAIN_CSV_VARIABLE)
    if configured:
        path = Path(configured)
        if not path.is_file():
            pytest.fail(f"{TRAIN_CSV_VARIABLE}={configured} is not a file", pytrace=False)
        return path
    for candidate in TRAIN_CSV_CANDIDATES:
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(candidate) for candidate in TRAIN_CSV_CANDIDATES)
    pytest.skip(
        f"SKIPPING THE FULL-DATA REPLAY: the Taiwan training split is not at {searched};"
        f" set {TRAIN_CSV_VARIABLE} to its path"
    )


@pytest.mark.slow
# Replaying and reading back 24,000 users takes minutes per database on a laptop.
@pytest.mark.timeout(1800)
def test_the_whole_training_split_replays_and_comes_back_exactly(
    running_ledger: RunningLedger, capsys: pytest.CaptureFixture[str]
) -> None:
    path = train_csv()
    rows = list(read_rows(path))

    summary = replay_csv(path, running_ledger.channel, batch_size=500, progress=False)

    assert summary.rows == len(rows) == TRAIN_ROWS
    assert summary.statements_recorded == TRAIN_ROWS * STATEMENTS_PER_ROW
    assert summary.credit_lines_recorded == TRAIN_ROWS
    differences = histories_that_differ(running_ledger, rows)
    assert differences == [], f"{len(differences)} rows differ, first:\n{first_of(differences)}"
    assert running_ledger.journal_entry_count() == TRAIN_ROWS * ENTRIES_PER_ROW
    with capsys.disabled():
        print(f"\n{running_ledger.address}: {summary.line()}")
