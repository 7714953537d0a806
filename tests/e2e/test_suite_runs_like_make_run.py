"""The whole suite, started exactly as `make run` starts it: the launcher and three processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from sesame.ledger.v1 import ledger_service_pb2, ledger_service_pb2_grpc
from sesame.score.v1 import score_service_pb2, score_service_pb2_grpc
from sesame.type.v1 import money_pb2, time_range_pb2
from sesame.waiver.v1 import waiver_service_pb2, waiver_service_pb2_grpc

from services.common.grpc_errors import error_details
from services.common.tls import TlsFiles, channel_credentials
from tests.support.suite import launched_suite

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "ledger": "sesame.ledger.v1.LedgerService",
    "score": "sesame.score.v1.ScoreService",
    "waiver": "sesame.waiver.v1.WaiverService",
}


@pytest.fixture(scope="module")
def running_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The suite as `make run` starts it, which must also stop cleanly on Ctrl-C."""
    work_directory = tmp_path_factory.mktemp("suite")
    # Checkpoints every second instead of make run's every minute; the key is made as by it.
    with launched_suite(work_directory, {"SESAME_LEDGER_CHECKPOINT_INTERVAL_S": "1"}) as addresses:
        yield {**addresses, "directory": str(work_directory)}


def channel_as(running_suite: dict[str, str], service: str, identity: str) -> grpc.Channel:
    """A mutual TLS channel to `service` with the local certificate `identity` (var/certs)."""
    certificates = Path(running_suite["directory"]) / "var" / "certs"
    files = TlsFiles(
        certificates / f"{identity}.pem",
        certificates / f"{identity}-key.pem",
        certificates / "ca.pem",
    )
    return grpc.secure_channel(running_suite[service], channel_credentials(files))


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_service_answers_health_serving(running_suite: dict[str, str], name: str) -> None:
    with channel_as(running_suite, name, "operator") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service=SERVICES[name]), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_service_lists_itself_through_reflection(
    running_suite: dict[str, str], name: str
) -> None:
    with channel_as(running_suite, name, "operator") as channel:
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert SERVICES[name] in services
    assert "grpc.health.v1.Health" in services


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_a_plaintext_or_certificate_less_call_to_any_port_is_refused(
    running_suite: dict[str, str], name: str
) -> None:
    ca = (Path(running_suite["directory"]) / "var" / "certs" / "ca.pem").read_bytes()
    for channel in (
        grpc.insecure_channel(running_suite[name]),
        grpc.secure_channel(running_suite[name], grpc.ssl_channel_credentials(ca)),
    ):
        with channel, pytest.raises(grpc.RpcError) as raised:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_merchant_reaches_only_its_own_orders_and_never_the_ledger(
    running_suite: dict[str, str],
) -> None:
    with channel_as(running_suite, "waiver", "merchant-sesame-demo") as channel:
        waiver = waiver_service_pb2_grpc.WaiverServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            waiver.ListOrders(
                waiver_service_pb2.ListOrdersRequest(merchant_id="another-merchant"), timeout=5
            )
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    hold = ledger_service_pb2.PlaceHoldRequest(
        request_id="merchant-hold-1",
        user_id="u-1",
        amount=money_pb2.Money(currency_code="CNY", amount_minor=100),
    )
    with (
        channel_as(running_suite, "ledger", "merchant-sesame-demo") as channel,
        pytest.raises(grpc.RpcError) as raised,
    ):
        ledger_service_pb2_grpc.LedgerServiceStub(channel).PlaceHold(hold, timeout=5)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_details(raised.value).reason == "CALLER_NOT_ADMITTED"


def grant_consent_of_u_7(running_suite: dict[str, str]) -> None:
    """u-7 consents to be scored on their own channel, as the README's examples do (under the
    same request id, so whichever comes first, the other changes nothing)."""
    with channel_as(running_suite, "ledger", "user-u-7") as channel:
        consent = (
            ledger_service_pb2_grpc.LedgerServiceStub(channel)
            .RecordConsent(
                ledger_service_pb2.RecordConsentRequest(
                    request_id="u-7-consent-1",
                    user_id="u-7",
                    state=ledger_service_pb2.CONSENT_STATE_GRANTED,
                ),
                timeout=5,
            )
            .consent
        )
    assert consent.state == ledger_service_pb2.CONSENT_STATE_GRANTED


def test_a_user_reads_their_own_score_and_the_facts_it_rests_on_and_no_one_elses(
    running_suite: dict[str, str],
) -> None:
    grant_consent_of_u_7(running_suite)
    with channel_as(running_suite, "score", "user-u-7") as channel:
        score = score_service_pb2_grpc.ScoreServiceStub(channel)
        own = score.GetScore(score_service_pb2.GetScoreRequest(user_id="u-7"), timeout=5).score
        with pytest.raises(grpc.RpcError) as raised:
            score.GetScore(score_service_pb2.GetScoreRequest(user_id="u-8"), timeout=5)
    assert own.user_id == "u-7"
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with channel_as(running_suite, "ledger", "user-u-7") as channel:
        ledger = ledger_service_pb2_grpc.LedgerServiceStub(channel)
        facts = ledger.GetCreditHistory(
            ledger_service_pb2.GetCreditHistoryRequest(user_id="u-7"), timeout=5
        )
        with pytest.raises(grpc.RpcError) as raised:
            ledger.ListEntries(ledger_service_pb2.ListEntriesRequest(user_id="u-8"), timeout=5)
    assert facts.HasField("as_of_time")
    assert facts.consent.state == ledger_service_pb2.CONSENT_STATE_GRANTED
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_the_waiver_starts_with_the_seed_policies(running_suite: dict[str, str]) -> None:
    with channel_as(running_suite, "waiver", "merchant-sesame-demo") as channel:
        waiver = waiver_service_pb2_grpc.WaiverServiceStub(channel)
        listed = waiver.ListScenarioPolicies(
            waiver_service_pb2.ListScenarioPoliciesRequest(merchant_id="sesame-demo"), timeout=5
        )
    assert {policy.scenario_id for policy in listed.policies} == {
        "apartment",
        "bike",
        "car-rental",
        "generic",
        "hotel",
        "power-bank",
    }


def test_a_user_who_never_consented_is_not_scored_and_gets_no_order(
    running_suite: dict[str, str],
) -> None:
    with channel_as(running_suite, "score", "waiver") as channel:
        score = score_service_pb2_grpc.ScoreServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused_score:
            score.GetScore(score_service_pb2.GetScoreRequest(user_id="u-never"), timeout=5)
    now = datetime.now(UTC)
    create = waiver_service_pb2.CreateOrderRequest(
        request_id="never-1-create",
        merchant_id="sesame-demo",
        out_order_no="never-1",
        user_id="u-never",
        scenario_id="bike",
        risk_fund_type=waiver_service_pb2.RISK_FUND_TYPE_DEPOSIT,
        risk_amount=money_pb2.Money(currency_code="CNY", amount_minor=9900),
        time_range=time_range_pb2.TimeRange(
            start_time=timestamp_of(now), end_time=timestamp_of(now + timedelta(hours=2))
        ),
    )
    with channel_as(running_suite, "waiver", "merchant-sesame-demo") as channel:
        waiver = waiver_service_pb2_grpc.WaiverServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused_order:
            waiver.CreateOrder(create, timeout=5)
        with pytest.raises(grpc.RpcError) as not_found:
            waiver.GetOrder(
                waiver_service_pb2.GetOrderRequest(
                    merchant_id="sesame-demo", out_order_no="never-1"
                ),
                timeout=5,
            )
    assert refused_score.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(refused_score.value).reason == "CONSENT_MISSING"
    assert refused_order.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_details(refused_order.value).reason == "CONSENT_MISSING"
    assert not_found.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_unknown_user_who_consented_gets_a_thin_file_score(
    running_suite: dict[str, str],
) -> None:
    with channel_as(running_suite, "ledger", "operator") as channel:
        ledger_service_pb2_grpc.LedgerServiceStub(channel).RecordConsent(
            ledger_service_pb2.RecordConsentRequest(
                request_id="u-thin-consent",
                user_id="u-thin",
                state=ledger_service_pb2.CONSENT_STATE_GRANTED,
            ),
            timeout=5,
        )
    with channel_as(running_suite, "score", "waiver") as channel:
        score = score_service_pb2_grpc.ScoreServiceStub(channel)
        reply = score.GetScore(score_service_pb2.GetScoreRequest(user_id="u-thin"), timeout=5)
    assert reply.score.thin_file
    assert reply.score.thin_file_reason == score_service_pb2.THIN_FILE_REASON_NO_HISTORY


def test_a_malformed_ledger_request_names_the_field(running_suite: dict[str, str]) -> None:
    request = ledger_service_pb2.PlaceHoldRequest(
        user_id="u-1", amount=money_pb2.Money(currency_code="CNY", amount_minor=100)
    )
    with channel_as(running_suite, "ledger", "waiver") as channel:
        ledger = ledger_service_pb2_grpc.LedgerServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            ledger.PlaceHold(request, timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reason, fields = error_details(raised.value)
    assert reason == "REQUEST_ID_REQUIRED"
    assert "request_id" in fields


def timestamp_of(moment: datetime) -> timestamp_pb2.Timestamp:
    timestamp = timestamp_pb2.Timestamp()
    timestamp.FromDatetime(moment)
    return timestamp


DEFAULT_ADDRESSES = {
    "ledger": "127.0.0.1:50051",
    "score": "127.0.0.1:50052",
    "waiver": "127.0.0.1:50053",
}


def readme_example(name: str, running_suite: dict[str, str]) -> str:
    """The README's code block marked `<!-- example: name -->`, pointed at this test's suite."""
    readme = (REPOSITORY_ROOT / "README.md").read_text(encoding="utf-8")
    marker = f"<!-- example: {name} -->\n"
    assert marker in readme, name
    block = readme.split(marker, 1)[1].split("```", 2)[1]
    code = block.split("\n", 1)[1]
    for service, address in DEFAULT_ADDRESSES.items():
        code = code.replace(address, running_suite[service])
    return in_suite_directory(code, running_suite)


def in_suite_directory(code: str, running_suite: dict[str, str]) -> str:
    """README code naming `var/certs`, pointed at the certificates this suite's launcher made."""
    return re.sub(r"(?<![\w/])var/certs", f"{running_suite['directory']}/var/certs", code)


def test_the_readme_bike_order_runs_as_written_with_grpcurl(running_suite: dict[str, str]) -> None:
    script = readme_example("waiver-grpcurl", running_suite)
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    completed = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert '"outcome": "WAIVER_OUTCOME_FULL"' in completed.stdout
    assert '"state": "ORDER_STATE_AWAITING_PAYMENT"' in completed.stdout
    assert '"state": "ORDER_STATE_DONE"' in completed.stdout
    with channel_as(running_suite, "ledger", "operator") as channel:
        ledger = ledger_service_pb2_grpc.LedgerServiceStub(channel)
        account = ledger.GetAccountSummary(
            ledger_service_pb2.GetAccountSummaryRequest(user_id="u-7"), timeout=5
        ).account
    assert account.outcomes.on_time == 1


def test_the_readme_denied_car_order_runs_as_written_in_python(
    running_suite: dict[str, str],
) -> None:
    # The README's car order follows its bike order, after which u-7 has consented.
    grant_consent_of_u_7(running_suite)
    script = readme_example("waiver-python", running_suite)

    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPOSITORY_ROOT,
    )

    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0] == "WAIVER_OUTCOME_DENIED 500000"
    assert lines[1].startswith("THIN_FILE ")


# Every sh block of the README with a grpcurl line is one of these, each run by a test below.
GRPCURL_EXAMPLES = ("calling-grpcurl", "hold-grpcurl", "waiver-grpcurl", "health-grpcurl")


def run_shell(script: str) -> subprocess.CompletedProcess[str]:
    """Runs README shell lines as written, with this environment's grpcurl on the PATH."""
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )


def readme_blocks() -> list[tuple[str, str, str]]:
    """(marker or "", language, body) of every fenced block of the README."""
    readme = (REPOSITORY_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = []
    pattern = r"(?:<!-- example: ([\w-]+) -->\n)?```(\w*)\n(.*?)```"
    for match in re.finditer(pattern, readme, flags=re.DOTALL):
        blocks.append((match[1] or "", match[2], match[3]))
    return blocks


def readme_inline_grpcurl_lines(running_suite: dict[str, str]) -> list[str]:
    """The grpcurl commands the README quotes inline (`grpcurl …`), a line break read as a space,
    pointed at this test's suite."""
    readme = (REPOSITORY_ROOT / "README.md").read_text(encoding="utf-8")
    prose = re.sub(r"```.*?```", "", readme, flags=re.DOTALL)
    commands = []
    for span in re.findall(r"`([^`]+)`", prose):
        if span.startswith("grpcurl "):
            command = " ".join(span.split("\n"))
            for service, address in DEFAULT_ADDRESSES.items():
                command = command.replace(address, running_suite[service])
            commands.append(in_suite_directory(command, running_suite))
    return commands


def test_every_readme_shell_block_with_grpcurl_is_run_by_a_test() -> None:
    with_grpcurl = {
        marker
        for marker, language, body in readme_blocks()
        if language == "sh"
        and any(line.lstrip().startswith("grpcurl ") for line in body.splitlines())
    }
    assert with_grpcurl == set(GRPCURL_EXAMPLES)


def test_the_readme_ledger_example_runs_as_written_in_python(running_suite: dict[str, str]) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", readme_example("ledger-python", running_suite)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPOSITORY_ROOT,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0].split()[1] == "HOLD_STATE_OPEN"
    assert [line.split()[1] for line in lines[1:]] == ["capacity_set", "hold_placed"]


def test_the_readme_grpcurl_hold_runs_as_written(running_suite: dict[str, str]) -> None:
    # After the Python example, which gave u-1 a capacity of 500 yuan and held 300 of it.
    completed = run_shell(readme_example("hold-grpcurl", running_suite))
    assert completed.returncode == 0, completed.stderr
    hold = json.loads(completed.stdout)["hold"]
    assert hold["state"] == "HOLD_STATE_OPEN"
    assert hold["amount"] == {"currency_code": "CNY", "amount_minor": "10000"}


def test_the_readme_grpcurl_calls_run_as_written(running_suite: dict[str, str]) -> None:
    completed = run_shell(readme_example("calling-grpcurl", running_suite))
    assert completed.returncode == 0, completed.stderr
    listed = completed.stdout.split("{", 1)[0].split()
    assert "sesame.ledger.v1.LedgerService" in listed
    assert "grpc.reflection.v1.ServerReflection" in listed
    assert '"account"' in completed.stdout
    assert '"score"' in completed.stdout


def test_the_readme_health_check_of_a_dependency_runs_as_written(
    running_suite: dict[str, str],
) -> None:
    completed = run_shell(readme_example("health-grpcurl", running_suite))
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == {"status": "SERVING"}


def test_the_readme_inline_grpcurl_lines_run_as_written(running_suite: dict[str, str]) -> None:
    commands = readme_inline_grpcurl_lines(running_suite)
    assert commands, "the README quotes grpcurl lines inline"
    for command in commands:
        completed = run_shell(command)
        assert completed.returncode == 0, (command, completed.stderr)


def test_the_ledger_signs_checkpoints_with_a_key_made_on_first_use(
    running_suite: dict[str, str],
) -> None:
    work_directory = Path(running_suite["directory"])
    key_file, public_key_file = (
        work_directory / "var" / "checkpoint-key.pem",
        work_directory / "var" / "checkpoint-key.pub",
    )
    log_file = work_directory / "var" / "checkpoints.jsonl"
    assert key_file.stat().st_mode & 0o077 == 0
    request = ledger_service_pb2.SetWaiverCapacityRequest(
        request_id="checkpoint-e2e-1",
        user_id="u-checkpoint",
        capacity=money_pb2.Money(currency_code="CNY", amount_minor=100),
    )
    with channel_as(running_suite, "ledger", "waiver") as channel:
        ledger_service_pb2_grpc.LedgerServiceStub(channel).SetWaiverCapacity(request, timeout=5)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (log_file.exists() and log_file.read_text()):
        time.sleep(0.2)

    verified = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.ledger.admin",
            "--address",
            running_suite["ledger"],
            "verify",
            "--checkpoint-log",
            str(log_file),
            "--public-key",
            str(public_key_file),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)},
        cwd=work_directory,  # the operator's certificate under var/certs, as make run made it
        timeout=60,
    )

    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert '"intact": true' in verified.stdout


@pytest.mark.parametrize(
    ("profile", "service"),
    [("ledger-get-account-summary", "ledger"), ("waiver-get-order", "waiver")],
)
def test_make_load_runs_a_profile_with_mutual_tls(
    running_suite: dict[str, str], profile: str, service: str, tmp_path: Path
) -> None:
    raw = json.loads((REPOSITORY_ROOT / "deploy" / "ghz" / f"{profile}.json").read_text())
    raw.pop("duration", None)
    raw.update(concurrency=2, total=20, qps=10, timeout="5s")
    shortened = tmp_path / f"{profile}.json"
    shortened.write_text(json.dumps(raw))
    report_path = tmp_path / "report.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.benchmarks.ghz_load",
            "--bundled",
            "--target",
            running_suite[service],
            "--ledger",
            running_suite["ledger"],
            "--config",
            str(shortened),
            "--output",
            str(report_path),
            "--certs",
            str(Path(running_suite["directory"]) / "var" / "certs"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(report_path.read_text())
    assert report["count"] > 0
    assert report["statusCodeDistribution"] == {"OK": report["count"]}
    assert report["options"]["insecure"] is False
