"""The score benchmark (`make bench-score`): the score service against an echo server and MLServer.

Every figure comes from the bundled load generator (`loadgen.py`) at the same concurrency, one
connection per slot (so that worker processes sharing a port all get work), in one run:

1. The servers compared, all started at once and measured in turn:
   * the ceiling: an echo server built and run exactly as the score server is (the asyncio
     runtime, interceptors, health, reflection, logging, the same number of worker processes),
     answering each user with the score service's own answer, prepared beforehand;
   * the score server, as many worker processes (`--workers`, by default what the server
     itself chooses), reading a ledger (SQLite, a temporary file) into which the first USERS
     clients of the Taiwan training data are replayed; every worker's cache is filled first;
   * MLServer with mlserver-lightgbm serving the same trees (`mlserver_peer.py`), ModelInfer
     of one row of features per call as GetScore scores one user. Before anything is measured
     the booster is shown to give the ONNX model's probability of default within 1e-5 on the
     USERS rows, and MLServer's answers over gRPC on a few of them. It runs in its fastest
     configuration for this load, inference in its gRPC process (`parallel_workers` 0): its
     inference pool adds an IPC round trip to every one-row call (the README has the figures);
     `--mlserver-parallel-workers` measures it;
   * sync against asyncio: the same echo on the shared synchronous runtime and on the asyncio
     one, one process each, everything else equal: `echo_sync_per_s`, `echo_asyncio_per_s`.
2. `--rounds` rounds, each back to back: echo; warm GetScore at most (closed loop); warm
   GetScore offered half of that (open loop, latency from each call's scheduled time), and the
   echo offered the same rate (`echo_p99_ms_same_rate`: the latency floor of the runtime and
   the load generator on this machine); MLServer; the echo on either runtime. Ratios are taken
   within a round, so that drift in the machine's speed between rounds cancels, and every
   round figure printed is the median over the rounds.
3. Once, in this process: what the advice costs. Each of the USERS histories is scored as the
   score service scores a history it has just read (reasons and every applicable action checked
   by the model in the same run) and without its actions, alternately, ADVICE_REPEATS times;
   `advice_cost_us` is the median extra time per score, `score_with_advice_us` and
   `score_without_advice_us` the medians, and `advice_share_of_p99_target` the extra time as a
   share of the 5 ms p99 target (a warm GetScore answers from the cache, where the checked
   actions are kept with the score, so only a score computed afresh pays it).
4. Once: BatchGetScores of all USERS users per call and ScoreFeatures of BATCH_ROWS rows per
   call (what-if, offline batch), in rows per second per server process; then cold GetScore,
   a score server with its cache off so that every call reads the ledger.

The machine may be small, shared and noisy, so what counts are the ratios between figures of
the same run: `getscore_vs_echo` (target >= 0.85), `getscore_vs_mlserver` (>= 2),
`getscore_p99_ms_half_load` (<= 5 ms) and `batch_rows_per_s` (ScoreFeatures rows per second
per server process, >= 100,000), and `advice_share_of_p99_target` (<= 0.2). The last lines
printed are `RESULT <name> <value>`. Exit
status 1 when a figure is not valid (any failed call, or nothing measured).

    python -m tests.benchmarks.bench_score [--duration-s 6] [--rounds 3] [--workers N]
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPOSITORY_ROOT))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from google.protobuf import timestamp_pb2  # noqa: E402
from numpy.typing import NDArray  # noqa: E402
from sesame.score.v1 import score_service_pb2, score_service_pb2_grpc  # noqa: E402

from services.common.grpc_errors import status_details  # noqa: E402
from services.common.workers import worker_count  # noqa: E402
from services.datasets import taiwan  # noqa: E402
from services.datasets.replayer import replay_csv  # noqa: E402
from services.score.adapters.model_files import newest_model_directory  # noqa: E402
from services.score.adapters.onnx_model import OnnxModelLoader  # noqa: E402
from services.score.service import score_service  # noqa: E402
from services.score.settings import ScoreSettings  # noqa: E402
from services.score.training.dataset import TRAINING_DATA, history_for_row  # noqa: E402
from services.suite.launch import free_port, stop_all, wait_until_serving  # noqa: E402
from tests.benchmarks import echo_servers, mlserver_peer  # noqa: E402
from tests.benchmarks.loadgen import (  # noqa: E402
    LoadResult,
    Operation,
    OperationContext,
    OperationOutcome,
    run_load,
)
from tests.support.feature_rows import valid_rows  # noqa: E402

HOST = "127.0.0.1"
SCORE_SERVICE = "sesame.score.v1.ScoreService"
LEDGER_SERVICE = "sesame.ledger.v1.LedgerService"
CONCURRENCY = 16
# Users replayed into the ledger: the first rows of the training data; one BatchGetScores asks
# for all of them (the contract's most).
USERS = 1000
BATCH_ROWS = 1000
# Long enough that no cached history expires while the warm server is measured.
WARM_CACHE_MAX_AGE_S = 3600
WARMUP_S_MAX = 3.0
ADVICE_REPEATS = 5
P99_TARGET_MS = 5.0


# ----------------------------------------------------------------------------------------------
# Operations (imported by name in the load generator's worker processes)


def _statements_as_of() -> timestamp_pb2.Timestamp:
    timestamp = timestamp_pb2.Timestamp()
    timestamp.FromDatetime(taiwan.STATEMENTS_AS_OF)
    return timestamp


async def get_score(context: OperationContext) -> Operation:
    """One GetScore of a replayed user, picked at random."""
    stub = score_service_pb2_grpc.ScoreServiceStub(context.channel)
    user_ids: list[str] = context.arguments["user_ids"]
    as_of = _statements_as_of()

    async def operation() -> OperationOutcome | None:
        request = score_service_pb2.GetScoreRequest(
            user_id=context.random.choice(user_ids), as_of_time=as_of
        )
        await stub.GetScore(request, timeout=context.call_timeout_s)
        return None

    return operation


class UserNotScored(Exception):
    """A BatchGetScores result without a score."""


async def batch_get_scores(context: OperationContext) -> Operation:
    """One BatchGetScores of every replayed user, in an order of the slot's own; a unit is a
    user, and a user without a score fails the operation."""
    stub = score_service_pb2_grpc.ScoreServiceStub(context.channel)
    user_ids: list[str] = list(context.arguments["user_ids"])
    context.random.shuffle(user_ids)
    request = score_service_pb2.BatchGetScoresRequest(
        user_ids=user_ids, as_of_time=_statements_as_of()
    )

    async def operation() -> OperationOutcome:
        response = await stub.BatchGetScores(request, timeout=context.call_timeout_s)
        failed = [result for result in response.results if result.HasField("error")]
        if failed:
            reason = status_details(failed[0].error).reason
            raise UserNotScored(f"{failed[0].user_id}: {reason}")
        return OperationOutcome(units=len(response.results))

    return operation


async def score_feature_batch(context: OperationContext) -> Operation:
    """One ScoreFeatures call of BATCH_ROWS random rows, each value within its feature's range;
    a unit is a row."""
    stub = score_service_pb2_grpc.ScoreServiceStub(context.channel)
    rows = valid_rows(np.random.default_rng(context.slot_index), BATCH_ROWS)
    request = score_service_pb2.ScoreFeaturesRequest(feature_values=rows.ravel().tolist())

    async def operation() -> OperationOutcome:
        await stub.ScoreFeatures(request, timeout=context.call_timeout_s)
        return OperationOutcome(units=BATCH_ROWS)

    return operation


# ----------------------------------------------------------------------------------------------
# Processes


@contextmanager
def _process(
    arguments: list[str], environment: dict[str, str], port: int, grpc_service: str
) -> Iterator[str]:
    process = subprocess.Popen([sys.executable, *arguments], env=environment, cwd=REPOSITORY_ROOT)
    address = f"{HOST}:{port}"
    try:
        wait_until_serving(address, grpc_service, process)
        yield address
    finally:
        stop_all([process])


def _quiet_environment() -> dict[str, str]:
    environment = dict(os.environ)
    for prefix in ("SESAME_LEDGER_", "SESAME_SCORE_"):
        environment[f"{prefix}LOG_LEVEL"] = "WARNING"
        # Measured in plaintext, as the echo and MLServer peers are.
        environment[f"{prefix}PLAINTEXT"] = "true"
    return environment


@contextmanager
def _echo_server(kind: str, environment: dict[str, str]) -> Iterator[str]:
    port = free_port()
    arguments = ["-m", "tests.benchmarks.echo_servers", kind]
    with _process(
        arguments, {**environment, "SESAME_SCORE_PORT": str(port)}, port, SCORE_SERVICE
    ) as address:
        yield address


@contextmanager
def _score_server(
    environment: dict[str, str], ledger_address: str, **settings: object
) -> Iterator[str]:
    """A score server; `settings` are SESAME_SCORE_* values by lower-case name."""
    port = free_port()
    environment = {
        **environment,
        "SESAME_SCORE_PORT": str(port),
        "SESAME_SCORE_LEDGER_ADDRESS": ledger_address,
        **{f"SESAME_SCORE_{name.upper()}": str(value) for name, value in settings.items()},
    }
    with _process(["-m", "services.score"], environment, port, SCORE_SERVICE) as address:
        yield address


@contextmanager
def _ledger_with_users(environment: dict[str, str], directory: Path) -> Iterator[str]:
    """A ledger (SQLite) into which the users' rows are replayed."""
    port = free_port()
    ledger_environment = {
        **environment,
        "SESAME_LEDGER_PORT": str(port),
        "SESAME_LEDGER_DATABASE_URL": f"sqlite:///{directory / 'ledger.db'}",
    }
    with _process(["-m", "services.ledger"], ledger_environment, port, LEDGER_SERVICE) as address:
        with grpc.insecure_channel(address) as channel:
            replay_csv(_users_csv(directory), channel, progress=False)
        yield address


def _users_csv(directory: Path) -> Path:
    """The header and the first USERS rows of the training data, as a CSV file to replay."""
    path = directory / "users.csv"
    with gzip.open(TRAINING_DATA, "rt", encoding="utf-8") as source:
        path.write_text("".join(itertools.islice(source, USERS + 1)), encoding="utf-8")
    return path


def _users() -> list[str]:
    rows = itertools.islice(taiwan.read_rows(TRAINING_DATA), USERS)
    return [taiwan.user_id_for(row.client_id) for row in rows]


def _fill_caches(address: str, user_ids: list[str], connections: int) -> bytes:
    """BatchGetScores of every user over many connections, so that each worker (given work by
    connection) caches every history before anything warm is measured; returns the answer
    (a serialized BatchGetScoresResponse)."""
    request = score_service_pb2.BatchGetScoresRequest(
        user_ids=user_ids, as_of_time=_statements_as_of()
    )
    for _ in range(connections):
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(address, options=options) as channel:
            reply = score_service_pb2_grpc.ScoreServiceStub(channel).BatchGetScores(
                request, timeout=60
            )
    return bytes(reply.SerializeToString())


# ----------------------------------------------------------------------------------------------
# Measuring


@dataclass(frozen=True)
class LoadShape:
    """What every measurement shares: load generator processes, duration and concurrency."""

    client_processes: int
    duration_s: float
    concurrency: int = CONCURRENCY

    def measure(
        self,
        name: str,
        address: str,
        factory: str,
        *,
        rate_per_s: float | None = None,
        duration_s: float | None = None,
        warmup_s: float | None = None,
        **arguments: object,
    ) -> LoadResult:
        duration_s = duration_s or self.duration_s
        result = run_load(
            address,
            factory if ":" in factory else f"tests.benchmarks.bench_score:{factory}",
            concurrency=self.concurrency,
            processes=self.client_processes,
            duration_s=duration_s,
            warmup_s=warmup_s if warmup_s is not None else min(WARMUP_S_MAX, duration_s / 3),
            arguments=arguments,
            rate_per_s=rate_per_s,
            channel_per_slot=True,
        )
        print(f"{name}:\n{result.summary()}", flush=True)
        return result


@dataclass(frozen=True)
class Targets:
    """The addresses of the servers the rounds compare, all running at once."""

    echo: str
    warm_score: str
    mlserver: str
    # The echo on either runtime, one process each, to choose the runtime by measurement.
    runtime_sync: str
    runtime_asyncio: str


@dataclass(frozen=True)
class Round:
    """One round: echo, warm GetScore at most and at half of that, MLServer, back to back."""

    echo: LoadResult
    warm: LoadResult
    warm_half_load: LoadResult
    # The echo offered the same rate: the latency floor of the runtime and this load generator.
    echo_half_load: LoadResult
    mlserver: LoadResult
    runtime_sync: LoadResult
    runtime_asyncio: LoadResult

    def results(self) -> list[LoadResult]:
        return [
            self.echo,
            self.warm,
            self.warm_half_load,
            self.echo_half_load,
            self.mlserver,
            self.runtime_sync,
            self.runtime_asyncio,
        ]

    @property
    def getscore_vs_echo(self) -> float:
        return self.warm.operations_per_s / self.echo.operations_per_s

    @property
    def getscore_vs_mlserver(self) -> float:
        return self.warm.operations_per_s / self.mlserver.operations_per_s


def measure_round(
    shape: LoadShape, targets: Targets, user_ids: list[str], model_infer: dict[str, object]
) -> Round:
    def get_score(name: str, address: str, rate_per_s: float | None = None) -> LoadResult:
        return shape.measure(name, address, "get_score", rate_per_s=rate_per_s, user_ids=user_ids)

    echo = get_score("echo GetScore", targets.echo)
    warm = get_score("warm GetScore", targets.warm_score)
    half_load_per_s = warm.operations_per_s / 2
    warm_half_load = get_score("warm GetScore at half load", targets.warm_score, half_load_per_s)
    echo_half_load = get_score("echo GetScore at the same rate", targets.echo, half_load_per_s)
    mlserver = shape.measure(
        "MLServer ModelInfer",
        targets.mlserver,
        "tests.benchmarks.mlserver_peer:model_infer",
        **model_infer,
    )
    runtime_sync = get_score("echo GetScore, synchronous runtime", targets.runtime_sync)
    runtime_asyncio = get_score("echo GetScore, asyncio runtime", targets.runtime_asyncio)
    return Round(
        echo, warm, warm_half_load, echo_half_load, mlserver, runtime_sync, runtime_asyncio
    )


def measure_batches(
    shape: LoadShape, address: str, user_ids: list[str]
) -> tuple[LoadResult, LoadResult]:
    """BatchGetScores of every user per call (warm), and ScoreFeatures of BATCH_ROWS rows."""
    batch = shape.measure("BatchGetScores", address, "batch_get_scores", user_ids=user_ids)
    features = shape.measure("ScoreFeatures", address, "score_feature_batch")
    return batch, features


def measure_cold_score(
    shape: LoadShape, environment: dict[str, str], ledger_address: str, user_ids: list[str]
) -> LoadResult:
    """No cache: every call reads the user's history from the ledger."""
    with _score_server(environment, ledger_address, cache_max_entries=0) as address:
        return shape.measure("cold GetScore", address, "get_score", user_ids=user_ids)


@dataclass(frozen=True)
class MLServerPeer:
    """MLServer ready to start: its environment, the booster and the requests to send."""

    python: Path
    booster: Path
    messages: mlserver_peer.V2Messages
    file_descriptor: bytes
    rows: NDArray[np.float64]
    expected: NDArray[np.float64]


def prepare_mlserver() -> MLServerPeer:
    """The environment and the booster, shown to be the ONNX model before anything runs."""
    python = mlserver_peer.ensure_environment()
    onnx_path = newest_model_directory() / "model.onnx"
    booster = mlserver_peer.booster_file(onnx_path)
    rows = mlserver_peer.training_rows(USERS)
    expected = mlserver_peer.onnx_probability_of_default(onnx_path, rows)
    parity = mlserver_peer.booster_parity(booster, rows, expected)
    parity.check("the booster for MLServer")
    print(f"booster parity with the ONNX model: {parity}", flush=True)
    file_descriptor = mlserver_peer.v2_file_descriptor(python)
    messages = mlserver_peer.v2_messages(file_descriptor)
    return MLServerPeer(python, booster, messages, file_descriptor, rows, expected)


@contextmanager
def _mlserver(peer: MLServerPeer, directory: Path, parallel_workers: int) -> Iterator[str]:
    """MLServer on the booster, its answers checked against the ONNX model's first."""
    with mlserver_peer.running_mlserver(
        peer.python,
        peer.booster,
        directory,
        grpc_port=free_port(),
        http_port=free_port(),
        metrics_port=free_port(),
        parallel_workers=parallel_workers,
        messages=peer.messages,
    ) as address:
        served = mlserver_peer.served_parity(
            address,
            peer.messages,
            peer.rows[: mlserver_peer.SERVED_PARITY_ROWS],
            peer.expected[: mlserver_peer.SERVED_PARITY_ROWS],
        )
        served.check("MLServer's answers")
        print(f"MLServer parity with the ONNX model: {served}", flush=True)
        yield address


def _model_infer_arguments(peer: MLServerPeer) -> dict[str, object]:
    """What `mlserver_peer.model_infer` needs: one request per row, and the V2 descriptor."""
    return {
        "model_infer_requests": [
            mlserver_peer.model_infer_request(peer.messages, row) for row in peer.rows
        ],
        "v2_file_descriptor": peer.file_descriptor,
    }


# ----------------------------------------------------------------------------------------------
# The run


def _parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the score service.")
    parser.add_argument("--duration-s", type=float, default=6.0, help="each measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of echo, GetScore, MLServer")
    parser.add_argument(
        "--workers",
        type=int,
        default=ScoreSettings.model_fields["workers"].default,
        help="score (and echo) server processes; 0, the server's default, is one per CPU",
    )
    parser.add_argument("--client-processes", type=int, default=1, help="load generator processes")
    parser.add_argument(
        "--mlserver-parallel-workers",
        type=int,
        default=0,
        help="MLServer's inference processes; 0 (the fastest here) infers in its gRPC process",
    )
    return parser.parse_args()


def main() -> int:
    arguments = _parse_arguments()
    workers = worker_count(arguments.workers)
    shape = LoadShape(client_processes=arguments.client_processes, duration_s=arguments.duration_s)
    environment = {**_quiet_environment(), "SESAME_SCORE_WORKERS": str(workers)}
    user_ids = _users()
    advice = measure_advice_cost()
    peer = prepare_mlserver()
    with tempfile.TemporaryDirectory(prefix="sesame-bench-score-") as directory:
        rounds, batch, features, cold = measure_score_service(
            shape, environment, Path(directory), peer, user_ids, arguments
        )
    print(f"RESULT mlserver_parallel_workers {arguments.mlserver_parallel_workers}")
    print(f"RESULT score_workers {workers}")
    _print_round_results(rounds)
    _print_batch_results(batch, features, cold, workers)
    _print_advice_results(advice)
    measured = [batch, features, cold]
    measured += [result for measured_round in rounds for result in measured_round.results()]
    return 0 if all(result.valid for result in measured) else 1


def measure_score_service(
    shape: LoadShape,
    environment: dict[str, str],
    directory: Path,
    peer: MLServerPeer,
    user_ids: list[str],
    arguments: argparse.Namespace,
) -> tuple[list[Round], LoadResult, LoadResult, LoadResult]:
    """The rounds against the echo server and MLServer, then the batches and cold GetScore."""
    with ExitStack() as servers:
        ledger = servers.enter_context(_ledger_with_users(environment, directory))
        warm_score = servers.enter_context(
            _score_server(environment, ledger, cache_max_age_s=WARM_CACHE_MAX_AGE_S)
        )
        answers_file = directory / "echo-answers.bin"
        answers_file.write_bytes(
            _fill_caches(warm_score, user_ids, connections=4 * shape.concurrency)
        )
        echo_environment = {**environment, echo_servers.ANSWERS_FILE_VARIABLE: str(answers_file)}
        one_process = {**echo_environment, "SESAME_SCORE_WORKERS": "1"}
        targets = Targets(
            echo=servers.enter_context(_echo_server("score-like", echo_environment)),
            warm_score=warm_score,
            mlserver=servers.enter_context(
                _mlserver(peer, directory / "mlserver", arguments.mlserver_parallel_workers)
            ),
            runtime_sync=servers.enter_context(_echo_server("runtime-sync", one_process)),
            runtime_asyncio=servers.enter_context(_echo_server("runtime-asyncio", one_process)),
        )
        model_infer = _model_infer_arguments(peer)
        rounds = []
        for index in range(arguments.rounds):
            print(f"round {index + 1} of {arguments.rounds}", flush=True)
            rounds.append(measure_round(shape, targets, user_ids, model_infer))
        batch, features = measure_batches(shape, targets.warm_score, user_ids)
        cold = measure_cold_score(shape, environment, ledger, user_ids)
    return rounds, batch, features, cold


def _median(values: list[float]) -> float:
    return float(np.median(values))


def _print_round_results(rounds: list[Round]) -> None:
    """Medians over the rounds; the ratios are taken within each round, then the median."""
    figures = {
        "echo_sync_per_s": [r.runtime_sync.operations_per_s for r in rounds],
        "echo_asyncio_per_s": [r.runtime_asyncio.operations_per_s for r in rounds],
        "echo_get_score_per_s": [r.echo.operations_per_s for r in rounds],
        "warm_get_score_per_s": [r.warm.operations_per_s for r in rounds],
        "warm_get_score_p99_ms": [r.warm.latency_ms(0.99) for r in rounds],
        "half_load_offered_per_s": [r.warm_half_load.offered_per_s or 0.0 for r in rounds],
        "half_load_achieved_per_s": [r.warm_half_load.operations_per_s for r in rounds],
        "mlserver_model_infer_per_s": [r.mlserver.operations_per_s for r in rounds],
        "mlserver_model_infer_p99_ms": [r.mlserver.latency_ms(0.99) for r in rounds],
        "getscore_vs_echo": [r.getscore_vs_echo for r in rounds],
        "getscore_p99_ms_half_load": [r.warm_half_load.latency_ms(0.99) for r in rounds],
        "echo_p99_ms_same_rate": [r.echo_half_load.latency_ms(0.99) for r in rounds],
        "getscore_vs_mlserver": [r.getscore_vs_mlserver for r in rounds],
    }
    for name, values in figures.items():
        every_round = " ".join(f"{value:.3f}" for value in values)
        print(f"{name} by round: {every_round}")
    for name, values in figures.items():
        print(f"RESULT {name} {_median(values):.3f}")


def _print_batch_results(
    batch: LoadResult, features: LoadResult, cold: LoadResult, workers: int
) -> None:
    print(f"RESULT cold_get_score_per_s {cold.operations_per_s:.1f}")
    print(f"RESULT cold_get_score_p99_ms {cold.latency_ms(0.99):.2f}")
    print(f"RESULT batch_get_scores_rows_per_s {batch.units_per_s / workers:.0f}")
    print(f"RESULT batch_rows_per_s {features.units_per_s / workers:.0f}")


def measure_advice_cost() -> dict[str, float]:
    """Scoring a freshly read history with its actions checked against without, in this
    process, alternately (see the module docstring, step 3)."""
    loader = OnnxModelLoader(newest_model_directory().parent)
    model = loader.load(newest_model_directory().name)
    histories = [
        history_for_row(row) for row in itertools.islice(taiwan.read_rows(TRAINING_DATA), USERS)
    ]
    with_actions = [score_service.user_features_of(history, None) for history in histories]
    scored = [features for features in with_actions if features.features is not None]
    without_actions = [dataclasses.replace(features, action_rows=()) for features in scored]
    times: dict[str, list[float]] = {"with": [], "without": []}
    for _ in range(ADVICE_REPEATS):
        for name, users in (("with", scored), ("without", without_actions)):
            started = time.perf_counter()
            for features in users:
                score_service.score_user(model, "bench", features)
            times[name].append((time.perf_counter() - started) / len(users) * 1e6)
    with_us, without_us = _median(times["with"]), _median(times["without"])
    return {
        "score_with_advice_us": with_us,
        "score_without_advice_us": without_us,
        "advice_cost_us": with_us - without_us,
        "advice_share_of_p99_target": (with_us - without_us) / (P99_TARGET_MS * 1000),
        "actions_checked_per_score": sum(len(f.action_rows) for f in scored) / len(scored),
    }


def _print_advice_results(advice: dict[str, float]) -> None:
    for name, value in advice.items():
        print(f"RESULT {name} {value:.3f}")


if __name__ == "__main__":
    sys.exit(main())
