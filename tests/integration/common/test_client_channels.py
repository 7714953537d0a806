"""A channel from one Sesame service to another spreads its calls over every address its target
resolves to, one call each in turn, as it must behind a headless Service (deploy/README.md)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from services.common.channels import client_channel

CALLS = 20
WARM_UP_CALLS_MAX = 200


def identity(name: bytes) -> grpc.GenericRpcHandler:
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: name)
    return grpc.method_handlers_generic_handler("test.Replica", {"Name": handler})


@pytest.fixture
def two_replicas() -> Iterator[list[int]]:
    servers, ports = [], []
    for name in (b"first", b"second"):
        server = grpc.server(ThreadPoolExecutor(max_workers=2))
        server.add_generic_rpc_handlers((identity(name),))
        ports.append(server.add_insecure_port("127.0.0.1:0"))
        server.start()
        servers.append(server)
    try:
        yield ports
    finally:
        for server in servers:
            server.stop(0)


def test_calls_alternate_over_every_address_the_target_resolves_to(two_replicas: list[int]) -> None:
    # One name, two addresses: what a headless Service's DNS answer is to the client.
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in two_replicas)
    with client_channel(target, None) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        call = channel.unary_unary("/test.Replica/Name")
        # Round robin uses the replicas it is connected to: wait until it is to both.
        seen = set()
        for _ in range(WARM_UP_CALLS_MAX):
            seen.add(call(b"", timeout=5, wait_for_ready=True))
            if len(seen) == 2:
                break
        answers = [call(b"", timeout=5, wait_for_ready=True) for _ in range(CALLS)]
    assert seen == {b"first", b"second"}
    # Then each call goes to the next replica.
    assert all(first != second for first, second in itertools.pairwise(answers))


def test_a_plain_channel_would_keep_every_call_on_one_replica(two_replicas: list[int]) -> None:
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in two_replicas)
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary("/test.Replica/Name")
        answers = {call(b"", timeout=5, wait_for_ready=True) for _ in range(CALLS)}
    assert len(answers) == 1
