"""`python -m services.score` with several workers on one port, as the manifests run it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sesame.score.v1 import score_service_pb2 as pb, score_service_pb2_grpc

from services.score.adapters.model_files import MODELS_ROOT, REPOSITORY_ROOT
from services.score.api.servicer import SERVICE_NAME
from services.suite.launch import free_port, wait_until_serving

from .conftest import CALL_TIMEOUT_S, SERVING_MODEL_VERSION

WORKERS = 2
# Fresh connections made to find every worker: the kernel spreads them by their ports, so
# all of them landing on one worker of two has a chance of 2**-31.
CONNECTIONS = 32
FOLLOW_WAIT_S = 5.0
START_WAIT_S = 60.0
STOP_WAIT_S = 30.0


def score_environment(**settings: str) -> dict[str, str]:
    """This process's environment without any SESAME_ setting, plus `settings`."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("SESAME_")}
    environment["SESAME_SCORE_PLAINTEXT"] = "true"
    environment.update(settings)
    return environment


def run_score_until_it_exits(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.score"],
        cwd=REPOSITORY_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=STOP_WAIT_S,
    )


@pytest.fixture
def workers_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    models_root = tmp_path / "models"
    for version in (SERVING_MODEL_VERSION, "1.0.1"):
        shutil.copytree(MODELS_ROOT / SERVING_MODEL_VERSION, models_root / version)
    port = free_port()
    environment = score_environment(
        SESAME_SCORE_PORT=str(port),
        SESAME_SCORE_WORKERS=str(WORKERS),
        SESAME_SCORE_MODELS_DIRECTORY=str(models_root),
        SESAME_SCORE_MODEL_VERSION=SERVING_MODEL_VERSION,
        SESAME_SCORE_LEDGER_ADDRESS=f"127.0.0.1:{free_port()}",  # no ledger: not needed here
        SESAME_SCORE_LOG_LEVEL="WARNING",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "services.score"], cwd=REPOSITORY_ROOT, env=environment
    )
    address = f"127.0.0.1:{port}"
    try:
        wait_until_serving(address, SERVICE_NAME, process)
        # The first worker ready answers health; the others join the port once they are ready.
        deadline = time.monotonic() + START_WAIT_S
        while listening_sockets(port) < WORKERS and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listening_sockets(port) == WORKERS
        yield process, address
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(STOP_WAIT_S)


def listening_sockets(port: int) -> int:
    """How many sockets listen on `port`: one per worker that has joined it."""
    listening = "0A"
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):  # gRPC may listen on a v4-mapped socket
        for row in Path(table).read_text().splitlines()[1:]:
            local_address, state = row.split()[1], row.split()[3]
            count += local_address.endswith(f":{port:04X}") and state == listening
    return count


def versions_served(address: str) -> list[str]:
    """The model version each of CONNECTIONS fresh connections is answered with."""
    versions = []
    for _ in range(CONNECTIONS):
        with grpc.insecure_channel(address) as channel:
            stub = score_service_pb2_grpc.ScoreServiceStub(channel)
            info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=CALL_TIMEOUT_S)
            versions.append(info.model_version)
    return versions


def worker_pids(supervisor: subprocess.Popen[bytes]) -> list[int]:
    children = Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children").read_text().split()
    return [
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def test_a_model_swap_reaches_every_worker(
    workers_process: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, address = workers_process
    assert len(worker_pids(process)) == WORKERS

    with grpc.insecure_channel(address) as channel:
        stub = score_service_pb2_grpc.ScoreServiceStub(channel)
        request = pb.ReloadModelRequest(request_id="swap-all", model_version="1.0.1")
        assert stub.ReloadModel(request, timeout=CALL_TIMEOUT_S).model_version == "1.0.1"

    deadline = time.monotonic() + FOLLOW_WAIT_S
    versions = versions_served(address)
    while set(versions) != {"1.0.1"} and time.monotonic() < deadline:
        time.sleep(0.1)
        versions = versions_served(address)
    assert set(versions) == {"1.0.1"}


def test_sigterm_stops_every_worker_and_exits_cleanly(
    workers_process: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, _address = workers_process
    pids = worker_pids(process)

    process.send_signal(signal.SIGTERM)

    assert process.wait(STOP_WAIT_S) == 0
    assert not any(alive(pid) for pid in pids)


def test_workers_stop_when_the_supervisor_is_killed_outright(
    workers_process: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, _address = workers_process
    pids = worker_pids(process)

    process.kill()
    process.wait(STOP_WAIT_S)

    deadline = time.monotonic() + STOP_WAIT_S
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids)


def alive(pid: int) -> bool:
    """True while the process runs (a zombie waiting for its parent counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_worker_that_dies_takes_the_others_down_so_the_pod_restarts(
    workers_process: tuple[subprocess.Popen[bytes], str],
) -> None:
    process, _address = workers_process
    first, *others = worker_pids(process)

    os.kill(first, signal.SIGKILL)

    assert process.wait(STOP_WAIT_S) != 0
    assert not any(alive(pid) for pid in others)


def test_several_workers_need_a_fixed_port() -> None:
    finished = run_score_until_it_exits(
        score_environment(SESAME_SCORE_PORT="0", SESAME_SCORE_WORKERS="2")
    )

    assert finished.returncode != 0
    assert "SESAME_SCORE_PORT" in finished.stderr


def test_sigterm_while_workers_are_still_starting_is_a_clean_stop() -> None:
    environment = score_environment(
        SESAME_SCORE_PORT=str(free_port()),
        SESAME_SCORE_WORKERS=str(WORKERS),
        SESAME_SCORE_LEDGER_ADDRESS=f"127.0.0.1:{free_port()}",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "services.score"],
        cwd=REPOSITORY_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    # Logged as soon as the workers are spawned, long before they have imported anything.
    for line in process.stdout:
        if '"workers_started"' in line:
            break
    process.send_signal(signal.SIGTERM)

    assert process.wait(STOP_WAIT_S) == 0


@pytest.mark.parametrize("workers", [1, WORKERS])
def test_a_model_that_cannot_load_stops_the_process_with_the_reason(
    tmp_path: Path, workers: int
) -> None:
    environment = score_environment(
        SESAME_SCORE_PORT=str(free_port()),
        SESAME_SCORE_WORKERS=str(workers),
        SESAME_SCORE_MODELS_DIRECTORY=str(tmp_path),  # holds no model at all
        SESAME_SCORE_LEDGER_ADDRESS=f"127.0.0.1:{free_port()}",
    )

    finished = run_score_until_it_exits(environment)

    assert finished.returncode != 0
    assert '"server_start_failed"' in finished.stdout
