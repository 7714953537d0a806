"""The replay sends the data set in batches with content-derived request ids, retries only what is
safe to retry, and stops with a clear message otherwise. The ledger here is a fake that keeps the
contract's promise: idempotent per user and period."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from sesame.ledger.v1 import ledger_service_pb2

from services.common.errors import InvalidArgument
from services.common.grpc_errors import to_rpc_status
from services.datasets import replay_cli as cli
from services.datasets.replayer import (
    ReplayError,
    RetryPolicy,
    batch_request,
    replay_csv,
    request_id_for,
)
from services.datasets.taiwan import TaiwanDataError, read_rows

SAMPLE_CSV = Path(__file__).parents[2] / "fixtures" / "taiwan_sample.csv"
SAMPLE_ROWS = 8
STATEMENTS_PER_ROW = 6


class FakeRpcError(grpc.RpcError, grpc.Call):
    """A failed call as a channel raises it: an RpcError that is also a Call with a status."""

    def __init__(self, code: grpc.StatusCode, details: str = "", trailers: Sequence = ()) -> None:
        self._code = code
        self._details = details
        self._trailers = tuple(trailers)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple:
        return self._trailers

    def initial_metadata(self) -> tuple:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: object) -> bool:
        return False


@dataclass(frozen=True)
class Call:
    request: ledger_service_pb2.RecordPartnerStatementsRequest
    timeout: float | None


class FakeLedger:
    """Keeps the contract's promises: a repeated request_id gets the stored response, and an
    identical statement for a user and period changes nothing."""

    def __init__(self, failures: Sequence[Exception] = ()) -> None:
        self.failures = list(failures)
        self.calls: list[Call] = []
        self.statements: dict[tuple[str, int, int], bytes] = {}
        self.credit_lines: dict[str, bytes] = {}
        self.responses: dict[str, ledger_service_pb2.RecordPartnerStatementsResponse] = {}
        self.consents: dict[str, str] = {}

    def RecordConsent(
        self, request: ledger_service_pb2.RecordConsentRequest, timeout: float | None = None
    ) -> ledger_service_pb2.RecordConsentResponse:
        assert request.state == ledger_service_pb2.CONSENT_STATE_GRANTED
        self.consents.setdefault(request.user_id, request.request_id)
        return ledger_service_pb2.RecordConsentResponse(
            consent=ledger_service_pb2.Consent(state=ledger_service_pb2.CONSENT_STATE_GRANTED)
        )

    def RecordPartnerStatements(
        self,
        request: ledger_service_pb2.RecordPartnerStatementsRequest,
        timeout: float | None = None,
    ) -> ledger_service_pb2.RecordPartnerStatementsResponse:
        self.calls.append(Call(request, timeout))
        if self.failures:
            raise self.failures.pop(0)
        if request.request_id not in self.responses:
            self.responses[request.request_id] = ledger_service_pb2.RecordPartnerStatementsResponse(
                results=[self._record(report) for report in request.reports]
            )
        return self.responses[request.request_id]

    def _record(
        self, report: ledger_service_pb2.PartnerReport
    ) -> ledger_service_pb2.PartnerReportResult:
        result = ledger_service_pb2.PartnerReportResult(user_id=report.user_id)
        credit_line = report.credit_line.SerializeToString()
        result.credit_line_recorded = self.credit_lines.get(report.user_id) != credit_line
        self.credit_lines[report.user_id] = credit_line
        for statement in report.statements:
            key = (report.user_id, statement.period.year, statement.period.month)
            content = statement.SerializeToString()
            if self.statements.get(key) == content:
                result.statements_unchanged += 1
            else:
                result.statements_recorded += 1
                self.statements[key] = content
        return result


class NoSleep:
    def __init__(self) -> None:
        self.waits_s: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits_s.append(seconds)


def policy(attempts_max: int = 5) -> tuple[RetryPolicy, NoSleep]:
    sleep = NoSleep()
    return RetryPolicy(attempts_max=attempts_max, sleep=sleep), sleep


# Batching and idempotency


def test_a_replay_grants_each_replayed_users_consent_under_an_id_of_the_user() -> None:
    ledger = FakeLedger()

    replay_csv(SAMPLE_CSV, ledger, batch_size=3, progress=False)

    replayed = {report.user_id for call in ledger.calls for report in call.request.reports}
    assert set(ledger.consents) == replayed
    assert all(
        request_id == f"replay-consent-{user_id}" for user_id, request_id in ledger.consents.items()
    )


def test_a_replay_without_consent_grants_none() -> None:
    ledger = FakeLedger()

    replay_csv(SAMPLE_CSV, ledger, batch_size=3, progress=False, grant_consents=False)

    assert ledger.consents == {}


def test_a_replay_records_every_row_and_sums_the_results() -> None:
    ledger = FakeLedger()

    summary = replay_csv(SAMPLE_CSV, ledger, batch_size=3, progress=False)

    assert (summary.rows, summary.batches) == (SAMPLE_ROWS, 3)
    assert summary.statements_recorded == SAMPLE_ROWS * STATEMENTS_PER_ROW
    assert summary.statements_unchanged == 0
    assert summary.credit_lines_recorded == SAMPLE_ROWS
    assert [len(call.request.reports) for call in ledger.calls] == [3, 3, 2]
    assert len(ledger.statements) == SAMPLE_ROWS * STATEMENTS_PER_ROW


def test_every_call_carries_the_deadline() -> None:
    ledger = FakeLedger()

    replay_csv(SAMPLE_CSV, ledger, batch_size=3, deadline_s=7.5, progress=False)

    assert [call.timeout for call in ledger.calls] == [7.5, 7.5, 7.5]


def test_replaying_the_same_file_again_sends_the_same_ids_and_changes_nothing() -> None:
    ledger = FakeLedger()
    first = replay_csv(SAMPLE_CSV, ledger, batch_size=3, progress=False)
    first_ids = [call.request.request_id for call in ledger.calls]
    recorded = dict(ledger.statements)

    again = replay_csv(SAMPLE_CSV, ledger, batch_size=3, progress=False)

    assert [call.request.request_id for call in ledger.calls[3:]] == first_ids
    assert ledger.statements == recorded
    # Answered from the stored responses, so the counts are the first run's.
    assert again.statements_recorded == first.statements_recorded


def test_another_batch_size_sends_other_ids_and_still_changes_nothing() -> None:
    ledger = FakeLedger()
    replay_csv(SAMPLE_CSV, ledger, batch_size=3, progress=False)
    first_ids = {call.request.request_id for call in ledger.calls}

    again = replay_csv(SAMPLE_CSV, ledger, batch_size=5, progress=False)

    assert first_ids.isdisjoint(call.request.request_id for call in ledger.calls[3:])
    assert again.statements_recorded == 0
    assert again.statements_unchanged == SAMPLE_ROWS * STATEMENTS_PER_ROW


def test_a_request_id_depends_on_the_batch_content_only() -> None:
    rows = list(read_rows(SAMPLE_CSV))
    request = batch_request(rows[:3])

    assert request.request_id.startswith("replay-")
    assert len(request.request_id) == len("replay-") + 40
    assert batch_request(rows[:3]).request_id == request.request_id
    assert batch_request(rows[1:4]).request_id != request.request_id
    assert request_id_for(request) == request.request_id


def test_a_batch_holds_at_most_the_contracts_limit_of_reports() -> None:
    with pytest.raises(ValueError, match="batch_size must be 1 to 1000"):
        replay_csv(SAMPLE_CSV, FakeLedger(), batch_size=1001, progress=False)


# Retries


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_a_transient_failure_is_retried_with_the_same_request_id_and_backoff(
    code: grpc.StatusCode,
) -> None:
    ledger = FakeLedger(failures=[FakeRpcError(code), FakeRpcError(code)])
    retry_policy, sleep = policy()

    summary = replay_csv(
        SAMPLE_CSV, ledger, batch_size=SAMPLE_ROWS, progress=False, retry_policy=retry_policy
    )

    assert len(ledger.calls) == 3
    assert len({call.request.request_id for call in ledger.calls}) == 1
    assert sleep.waits_s == [0.5, 1.0]
    assert summary.statements_recorded == SAMPLE_ROWS * STATEMENTS_PER_ROW


def test_retries_are_bounded_and_then_the_replay_stops() -> None:
    unavailable = [FakeRpcError(grpc.StatusCode.UNAVAILABLE) for _ in range(10)]
    ledger = FakeLedger(failures=unavailable)
    retry_policy, sleep = policy(attempts_max=4)

    with pytest.raises(ReplayError, match="still answered UNAVAILABLE after 4 attempts"):
        replay_csv(SAMPLE_CSV, ledger, progress=False, retry_policy=retry_policy)

    assert len(ledger.calls) == 4
    assert sleep.waits_s == [0.5, 1.0, 2.0]


def test_backoff_grows_no_further_than_its_ceiling() -> None:
    retry_policy = RetryPolicy(backoff_initial_s=1.0, backoff_max_s=5.0)

    assert [retry_policy.backoff_s(failed) for failed in range(1, 6)] == [1, 2, 4, 5, 5]


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAUTHENTICATED,
    ],
)
def test_other_failures_are_not_retried(code: grpc.StatusCode) -> None:
    ledger = FakeLedger(failures=[FakeRpcError(code, details="no")])
    retry_policy, _ = policy()

    with pytest.raises(ReplayError, match=f"rejected batch replay-[0-9a-f]{{40}}: {code.name}"):
        replay_csv(SAMPLE_CSV, ledger, progress=False, retry_policy=retry_policy)

    assert len(ledger.calls) == 1


def test_an_invalid_argument_shows_the_reason_the_field_and_the_user() -> None:
    rejection = InvalidArgument.for_field(
        "reports[1].statements[0].months_late", "must be 1 to 99", reason="MONTHS_LATE_OUT_OF_RANGE"
    )
    status = to_rpc_status(rejection)
    error = FakeRpcError(status.code, status.details, status.trailing_metadata)
    ledger = FakeLedger(failures=[error])

    with pytest.raises(ReplayError) as raised:
        replay_csv(SAMPLE_CSV, ledger, batch_size=3, progress=False)

    message = str(raised.value)
    assert "INVALID_ARGUMENT" in message
    assert "reason MONTHS_LATE_OUT_OF_RANGE" in message
    assert "reports[1].statements[0].months_late (user tw-4)" in message
    assert "nothing was recorded" in message


def test_a_failure_after_some_batches_says_what_is_recorded_and_how_to_resume() -> None:
    ledger = FailingSecondCall(FakeLedger())

    with pytest.raises(ReplayError, match=r"the first 1 batches \(3 rows\) are recorded"):
        replay_csv(SAMPLE_CSV, ledger, batch_size=3, progress=False)


class FailingSecondCall:
    """Passes the first call to the ledger and rejects the second."""

    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger
        self.calls = 0

    def RecordPartnerStatements(
        self,
        request: ledger_service_pb2.RecordPartnerStatementsRequest,
        timeout: float | None = None,
    ) -> ledger_service_pb2.RecordPartnerStatementsResponse:
        self.calls += 1
        if self.calls == 2:
            raise FakeRpcError(grpc.StatusCode.INTERNAL)
        return self.ledger.RecordPartnerStatements(request, timeout)

    def RecordConsent(
        self, request: ledger_service_pb2.RecordConsentRequest, timeout: float | None = None
    ) -> ledger_service_pb2.RecordConsentResponse:
        return self.ledger.RecordConsent(request, timeout)


def test_results_for_other_users_than_sent_stop_the_replay() -> None:
    class Confused(FakeLedger):
        def RecordPartnerStatements(self, request, timeout=None):
            response = super().RecordPartnerStatements(request, timeout)
            response.results[0].user_id = "someone-else"
            return response

    with pytest.raises(ReplayError, match="results for other users"):
        replay_csv(SAMPLE_CSV, Confused(), progress=False)


# Bad input stops before the first write


def test_a_malformed_file_sends_nothing(tmp_path: Path) -> None:
    lines = SAMPLE_CSV.read_text().splitlines()
    lines[-1] = lines[-1].replace(",3054,", ",30.54,")
    malformed = tmp_path / "malformed.csv"
    malformed.write_text("\n".join(lines) + "\n")
    ledger = FakeLedger()

    with pytest.raises(TaiwanDataError, match="line 9, column PAY_AMT6"):
        replay_csv(malformed, ledger, progress=False)

    assert ledger.calls == []


def test_a_client_listed_twice_sends_nothing(tmp_path: Path) -> None:
    lines = SAMPLE_CSV.read_text().splitlines()
    repeated = tmp_path / "repeated.csv"
    repeated.write_text("\n".join([*lines, lines[2]]) + "\n")
    ledger = FakeLedger()

    with pytest.raises(ReplayError, match="client ID 4 appears more than once"):
        replay_csv(repeated, ledger, progress=False)

    assert ledger.calls == []


# The command


def test_the_command_reports_a_malformed_file_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    malformed = tmp_path / "malformed.csv"
    malformed.write_text(SAMPLE_CSV.read_text().replace("\n4,50000,", "\n4,50000.0,"))

    # Nothing is sent, so no ledger needs to listen at this address.
    exit_code = cli.main(
        ["--csv", str(malformed), "--ledger", "127.0.0.1:9", "--no-progress", "--plaintext"]
    )

    assert exit_code == 1
    assert "line 3, column LIMIT_BAL" in capsys.readouterr().err


def test_the_command_reports_a_missing_file_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = cli.main(
        ["--csv", str(tmp_path / "absent.csv"), "--ledger", "127.0.0.1:9", "--plaintext"]
    )

    assert exit_code == 1
    assert "absent.csv" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arguments",
    [
        ["--batch-size", "0"],
        ["--batch-size", "1001"],
        ["--batch-size", "ten"],
        ["--deadline-s", "0"],
        ["--deadline-s", "nan"],
        ["--deadline-s", "inf"],
    ],
)
def test_the_command_refuses_out_of_range_options(arguments: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--csv", str(SAMPLE_CSV), "--ledger", "127.0.0.1:9", *arguments])

    assert exited.value.code == 2
