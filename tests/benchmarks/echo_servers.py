"""Echo servers for `bench_score`: GetScore answering without doing any work.

Each user is answered with their real answer, prepared beforehand: the serialized
BatchGetScoresResponse in the file SESAME_ECHO_ANSWERS_FILE names (`bench_score` writes the
score service's own answers there), so that the ceiling includes what carrying real answers
costs the runtime. A bare score of a few bytes would be a ceiling no service answering real
scores could approach, since the size of the answer alone changes how many calls per second a
server answers (the README has the figures).

* `score-like`: built exactly as the score server is (the asyncio runtime's `serve_aio` with the
  score settings, interceptors, health, reflection and logging) and run as it runs: with
  SESAME_SCORE_WORKERS above one, as that many worker processes sharing the port. The ceiling
  of gRPC in Python on this machine, for the score service to be compared with.
* `runtime-sync` and `runtime-asyncio`: one process each, the echo on the shared synchronous
  runtime (`services.common.server.serve`) and on the asyncio one
  (`services.common.aio_server.serve_aio`), everything else equal: to choose between them by
  measurement.

Every server reads its settings from the environment (SESAME_SCORE_PORT, SESAME_SCORE_WORKERS,
...), as the score server does::

    SESAME_SCORE_PORT=50099 SESAME_ECHO_ANSWERS_FILE=answers.bin \
        python -m tests.benchmarks.echo_servers score-like
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import cache, partial
from pathlib import Path
from typing import Any

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPOSITORY_ROOT))

import grpc  # noqa: E402
from sesame.score.v1 import score_service_pb2, score_service_pb2_grpc  # noqa: E402

from services.common.aio_server import serve_aio  # noqa: E402
from services.common.logging import configure_logging  # noqa: E402
from services.common.runtime import ServiceRegistration, start_metrics_endpoint  # noqa: E402
from services.common.server import serve  # noqa: E402
from services.common.settings import load_settings  # noqa: E402
from services.common.workers import run_workers, worker_count  # noqa: E402
from services.score.settings import ScoreSettings  # noqa: E402

SCORE_SERVICE = "sesame.score.v1.ScoreService"
ECHO_LABEL = "score-echo"
ANSWERS_FILE_VARIABLE = "SESAME_ECHO_ANSWERS_FILE"

GetScoreRequest = score_service_pb2.GetScoreRequest
GetScoreResponse = score_service_pb2.GetScoreResponse


@cache
def answers() -> dict[str, GetScoreResponse]:
    """Each user's answer, read once per process."""
    batch = score_service_pb2.BatchGetScoresResponse.FromString(
        Path(os.environ[ANSWERS_FILE_VARIABLE]).read_bytes()
    )
    return {result.user_id: GetScoreResponse(score=result.score) for result in batch.results}


class EchoScoreServicer(score_service_pb2_grpc.ScoreServiceServicer):
    def GetScore(self, request: GetScoreRequest, context: grpc.ServicerContext) -> GetScoreResponse:
        return answers()[request.user_id]


class AsyncEchoScoreServicer(score_service_pb2_grpc.ScoreServiceServicer):
    async def GetScore(
        self, request: GetScoreRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> GetScoreResponse:
        return answers()[request.user_id]


def _registration(servicer: score_service_pb2_grpc.ScoreServiceServicer) -> ServiceRegistration:
    answers()  # read before serving, not on the first call
    return ServiceRegistration(
        SCORE_SERVICE,
        lambda server: score_service_pb2_grpc.add_ScoreServiceServicer_to_server(servicer, server),
    )


# ----------------------------------------------------------------------------------------------
# Built and run as the score server is


def run_score_like() -> int:
    """Serves the echo as `python -m services.score` serves scores: one process or workers."""
    settings = load_settings(ScoreSettings)
    workers = worker_count(settings.workers)
    if workers == 1:
        return run_runtime_asyncio()
    configure_logging(ECHO_LABEL, settings.log_level)
    metrics_endpoint = partial(start_metrics_endpoint, settings)
    return run_workers(workers, run_echo_worker, name=ECHO_LABEL, metrics_endpoint=metrics_endpoint)


def run_echo_worker() -> None:
    """One worker process of `run_score_like`; the settings come from the environment."""
    registration = _registration(AsyncEchoScoreServicer())
    serve_aio(load_settings(ScoreSettings), [registration], service_name=ECHO_LABEL, as_worker=True)


# ----------------------------------------------------------------------------------------------
# One process on either runtime: synchronous against asyncio


def run_runtime_sync() -> int:
    registration = _registration(EchoScoreServicer())
    serve(load_settings(ScoreSettings), [registration], service_name=ECHO_LABEL)
    return 0


def run_runtime_asyncio() -> int:
    registration = _registration(AsyncEchoScoreServicer())
    serve_aio(load_settings(ScoreSettings), [registration], service_name=ECHO_LABEL)
    return 0


SERVERS = {
    "score-like": run_score_like,
    "runtime-sync": run_runtime_sync,
    "runtime-asyncio": run_runtime_asyncio,
}


def main() -> int:
    parser = argparse.ArgumentParser(description="An echo GetScore server for bench_score.")
    parser.add_argument("kind", choices=sorted(SERVERS))
    return SERVERS[parser.parse_args().kind]()


if __name__ == "__main__":
    sys.exit(main())
