"""The bundled load generator (`make load` without ghz) against a server that ends a streamed
call while the client is still writing, as the score service ends StreamScoreFeatures at a bad
batch: each call is reported with the status the server sent (INVALID_ARGUMENT and its
ErrorInfo reason), never with the INTERNAL that gRPC's asyncio client makes up when a write
finds the call over; and a whole run, through its spawned worker process, says the same."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from tests.benchmarks.ghz_load import PROFILES_DIRECTORY, LoadProfile, ghz_call, run_bundled
from tests.benchmarks.loadgen import OperationContext, describe_error

CALL = "sesame.score.v1.ScoreService.StreamScoreFeatures"
REASON = "FEATURE_VALUE_NOT_FINITE"
# Batches per call: the server refuses the first, so most are written after it has answered.
BATCHES_PER_CALL = 400
CALLS = 30


def refuse_the_first_batch(request_iterator: Iterator[bytes], context: grpc.ServicerContext) -> Any:
    next(request_iterator)
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=REASON, domain="sesame"))
    status = status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message="a batch is not finite", details=[info]
    )
    context.abort_with_status(rpc_status.to_status(status))


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    handler = grpc.stream_stream_rpc_method_handler(refuse_the_first_batch)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "sesame.score.v1.ScoreService", {"StreamScoreFeatures": handler}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0)


def batches() -> list[dict[str, Any]]:
    profile = LoadProfile.read(PROFILES_DIRECTORY / "score-stream-score-features.json")
    assert profile.call == CALL
    data = profile.data
    return [data[index % len(data)] for index in range(BATCHES_PER_CALL)]


def test_each_call_ended_early_by_the_server_reports_the_servers_status(address: str) -> None:
    async def outcomes() -> list[str]:
        async with grpc.aio.insecure_channel(address) as channel:
            context = OperationContext(
                channel=channel,
                address=address,
                process_index=0,
                slot_index=0,
                random=random.Random(7),
                arguments={"call": CALL, "data": batches(), "metadata": {}, "concurrency": 1},
                call_timeout_s=10.0,
            )
            operation = await ghz_call(context)
            seen = []
            for _ in range(CALLS):
                try:
                    await operation()
                    seen.append("OK")
                except Exception as error:
                    seen.append(describe_error(error))
            return seen

    assert asyncio.run(outcomes()) == [f"INVALID_ARGUMENT/{REASON}"] * CALLS


def test_a_run_of_the_bundled_generator_reports_the_servers_status(
    address: str, tmp_path: Path
) -> None:
    path = tmp_path / "stream.json"
    raw = {
        "call": CALL,
        "insecure": True,
        "concurrency": 2,
        "connections": 1,
        "duration": "1s",
        "timeout": "10s",
        "data": batches(),
    }
    path.write_text(json.dumps(raw))

    report = run_bundled(LoadProfile.read(path), address)

    assert report["count"] > 0
    assert report["statusCodeDistribution"] == {"InvalidArgument": report["count"]}
    assert list(report["errorDistribution"]) == [
        f"rpc error: code = InvalidArgument INVALID_ARGUMENT/{REASON}"
    ]
