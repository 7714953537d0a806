"""Echo servers for `bench_score`: GetScore answering a fixed score without doing any work.

* `score-like`: built exactly as the score server is (the shared runtime's `serve` with the
  score settings, interceptors, health, reflection and logging) and run as it runs: with
  SESAME_SCORE_WORKERS above one, as that many worker processes sharing the port. The ceiling
  of gRPC in Python on this machine, for the score service to be compared with.
* `bare-sync` and `bare-asyncio`: one process each, the same channel options, thread pool and
  concurrency limit, health (so that the benchmark can wait for them) and no interceptors; the
  synchronous server and grpc.aio, to choose between them by measurement.

Every server reads its settings from the environment (SESAME_SCORE_PORT, SESAME_SCORE_WORKERS,
...), as the score server does::

    SESAME_SCORE_PORT=50099 python -m tests.benchmarks.echo_servers score-like
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPOSITORY_ROOT))

import grpc  # noqa: E402
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # noqa: E402
from sesame.score.v1 import score_service_pb2, score_service_pb2_grpc  # noqa: E402

from services.common.logging import configure_logging  # noqa: E402
from services.common.server import ServiceRegistration, serve, start_metrics_endpoint  # noqa: E402
from services.common.settings import load_settings  # noqa: E402
from services.common.workers import run_workers, worker_count  # noqa: E402
from services.score.settings import ScoreSettings  # noqa: E402

SCORE_SERVICE = "sesame.score.v1.ScoreService"
ECHO_LABEL = "score-echo"
FIXED_SCORE = 600


def _echo_response(
    request: score_service_pb2.GetScoreRequest,
) -> score_service_pb2.GetScoreResponse:
    return score_service_pb2.GetScoreResponse(
        score=score_service_pb2.Score(user_id=request.user_id, score=FIXED_SCORE)
    )


class EchoScoreServicer(score_service_pb2_grpc.ScoreServiceServicer):
    def GetScore(
        self, request: score_service_pb2.GetScoreRequest, context: grpc.ServicerContext
    ) -> score_service_pb2.GetScoreResponse:
        return _echo_response(request)


class AsyncEchoScoreServicer(score_service_pb2_grpc.ScoreServiceServicer):
    async def GetScore(
        self,
        request: score_service_pb2.GetScoreRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> score_service_pb2.GetScoreResponse:
        return _echo_response(request)


# ----------------------------------------------------------------------------------------------
# Built and run as the score server is


def _echo_registration() -> ServiceRegistration:
    servicer = EchoScoreServicer()
    return ServiceRegistration(
        SCORE_SERVICE,
        lambda server: score_service_pb2_grpc.add_ScoreServiceServicer_to_server(servicer, server),
    )


def run_score_like() -> int:
    """Serves the echo as `python -m services.score` serves scores: one process or workers."""
    settings = load_settings(ScoreSettings)
    workers = worker_count(settings.workers)
    if workers == 1:
        serve(settings, [_echo_registration()], service_name=ECHO_LABEL)
        return 0
    configure_logging(ECHO_LABEL, settings.log_level)
    metrics_endpoint = partial(start_metrics_endpoint, settings)
    return run_workers(workers, run_echo_worker, name=ECHO_LABEL, metrics_endpoint=metrics_endpoint)


def run_echo_worker() -> None:
    """One worker process of `run_score_like`; the settings come from the environment."""
    serve(
        load_settings(ScoreSettings),
        [_echo_registration()],
        service_name=ECHO_LABEL,
        as_worker=True,
    )


# ----------------------------------------------------------------------------------------------
# Bare servers: synchronous against asyncio


def _bare_options(settings: ScoreSettings) -> list[tuple[str, int]]:
    """The channel options the shared runtime gives a single-process server."""
    options = [
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    if settings.max_connection_age_s > 0:
        options += [
            ("grpc.max_connection_age_ms", round(settings.max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", round(settings.grace_period_s * 1000)),
        ]
    return options


def run_bare_sync() -> int:
    settings = load_settings(ScoreSettings)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="grpc-worker"),
        options=_bare_options(settings),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    score_service_pb2_grpc.add_ScoreServiceServicer_to_server(EchoScoreServicer(), server)
    health_servicer = health.HealthServicer()
    health_servicer.set(SCORE_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"{settings.host}:{settings.port}")
    server.start()
    server.wait_for_termination()
    return 0


async def _serve_bare_asyncio(settings: ScoreSettings) -> None:
    server = grpc.aio.server(
        options=_bare_options(settings), maximum_concurrent_rpcs=settings.max_concurrent_rpcs
    )
    score_service_pb2_grpc.add_ScoreServiceServicer_to_server(AsyncEchoScoreServicer(), server)
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set(SCORE_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"{settings.host}:{settings.port}")
    await server.start()
    await server.wait_for_termination()


def run_bare_asyncio() -> int:
    asyncio.run(_serve_bare_asyncio(load_settings(ScoreSettings)))
    return 0


SERVERS = {
    "score-like": run_score_like,
    "bare-sync": run_bare_sync,
    "bare-asyncio": run_bare_asyncio,
}


def main() -> int:
    parser = argparse.ArgumentParser(description="An echo GetScore server for bench_score.")
    parser.add_argument("kind", choices=sorted(SERVERS))
    return SERVERS[parser.parse_args().kind]()


if __name__ == "__main__":
    sys.exit(main())
