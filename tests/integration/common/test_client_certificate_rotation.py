"""A service's channel to another presents its renewed client certificate without a restart,
through real mutual TLS: a server that trusts the suite's CA sees which certificate each call
presented (its serial number), before and after the client's files are replaced; the call in
flight when they change finishes on the old channel, which is closed after it; the dependency
watch's health checks go over the new channel; and a certificate that does not match its key
is logged and the previous one kept, as the servers do."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from cryptography import x509
from grpc_health.v1 import health_pb2

from services.common.certificates import LocalIdentity, issue_certificate, load_local_authority
from services.common.channels import ReloadingChannel, client_channel
from services.common.dependency_health import Dependency, DependencyWatch
from services.common.tls import server_credentials
from tests.support.tls import make_certificates, tls_files
from tests.support.waiting import until

NAME = "test.Ledger"
WAIVER = LocalIdentity("waiver", "service/waiver")
TIMEOUT_S = 10.0
WAIT_S = 10.0


@dataclass
class Peer:
    """The callee: answers with the serial number of the certificate each call presented, and
    writes down which one each kind of call saw."""

    address: str
    seen: dict[str, list[int]] = field(default_factory=dict)
    holding: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def record(self, kind: str, context: grpc.ServicerContext) -> int:
        pem = context.auth_context()["x509_pem_cert"][0]
        serial = x509.load_pem_x509_certificate(pem).serial_number
        self.seen.setdefault(kind, []).append(serial)
        return serial


def _handlers(peer: Peer) -> Sequence[grpc.GenericRpcHandler]:
    def serial(request: bytes, context: grpc.ServicerContext) -> bytes:
        return str(peer.record("serial", context)).encode()

    def hold(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        peer.record("hold", context)
        peer.holding.set()
        peer.release.wait(WAIT_S)
        yield b"done"

    def check(
        request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        peer.record("health", context)
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    return (
        grpc.method_handlers_generic_handler(
            "test.Peer",
            {
                "Serial": grpc.unary_unary_rpc_method_handler(serial),
                "Hold": grpc.unary_stream_rpc_method_handler(hold),
            },
        ),
        grpc.method_handlers_generic_handler(
            "grpc.health.v1.Health",
            {
                "Check": grpc.unary_unary_rpc_method_handler(
                    check,
                    request_deserializer=health_pb2.HealthCheckRequest.FromString,
                    response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
                )
            },
        ),
    )


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    return make_certificates(tmp_path / "certs")


@pytest.fixture
def peer(certificates: Path) -> Iterator[Peer]:
    # The ledger's certificate and the suite's CA, with the servers' own TLS code.
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    created = Peer("")
    server.add_generic_rpc_handlers(_handlers(created))
    port = server.add_secure_port(
        "127.0.0.1:0", server_credentials(tls_files(certificates, "ledger"))
    )
    server.start()
    created.address = f"127.0.0.1:{port}"
    try:
        yield created
    finally:
        created.release.set()
        server.stop(0)


def serial_in(certificate_file: Path) -> int:
    return x509.load_pem_x509_certificate(certificate_file.read_bytes()).serial_number


def renew(directory: Path) -> int:
    """What cert-manager does: a new key and certificate for the same identity, from the same
    CA, written over the old files; the new serial number."""
    issue_certificate(directory, WAIVER, *load_local_authority(directory))
    return serial_in(directory / "waiver.pem")


def serial_call(channel: grpc.Channel) -> Callable[[], int]:
    call = channel.unary_unary("/test.Peer/Serial")
    return lambda: int(call(b"", timeout=TIMEOUT_S))


def is_closed(channel: grpc.Channel) -> bool:
    try:
        channel.unary_unary("/test.Peer/Serial")(b"", timeout=TIMEOUT_S)
    except ValueError:  # gRPC refuses a call on a closed channel
        return True
    except grpc.RpcError as error:  # closed while the call was on it
        return error.code() == grpc.StatusCode.CANCELLED  # type: ignore[attr-defined, no-any-return]
    return False


def waivers_channel(certificates: Path, peer: Peer) -> grpc.Channel:
    """The waiver's channel to the peer, looking at its files before every call."""
    return client_channel(
        peer.address, tls_files(certificates, "waiver"), certificate_check_interval_s=0
    )


def test_a_renewed_client_certificate_is_presented_without_a_new_channel(
    certificates: Path, peer: Peer
) -> None:
    first = serial_in(certificates / "waiver.pem")
    with waivers_channel(certificates, peer) as channel:
        serial = serial_call(channel)
        watch = DependencyWatch(
            [Dependency(NAME, channel)], lambda name, serving: None, interval_s=60, timeout_s=5
        )
        before = [serial(), watch.check_now()[NAME]]
        second = renew(certificates)
        after = [serial(), watch.check_now()[NAME], serial()]

    assert first != second
    assert before == [first, True]
    assert after == [second, True, second]
    assert peer.seen["serial"] == [first, second, second]
    # The dependency watch holds the same channel, so its checks follow the new certificate.
    assert peer.seen["health"] == [first, second]


def test_the_call_in_flight_finishes_on_the_old_channel_which_is_closed_after_it(
    certificates: Path, peer: Peer
) -> None:
    opened: list[grpc.Channel] = []

    def open_channel(
        address: str, credentials: grpc.ChannelCredentials, options: Sequence[tuple[str, Any]]
    ) -> grpc.Channel:
        opened.append(grpc.secure_channel(address, credentials, options=options))
        return opened[-1]

    first = serial_in(certificates / "waiver.pem")
    with ReloadingChannel(
        peer.address,
        tls_files(certificates, "waiver"),
        check_interval_s=0,
        open_channel=open_channel,
    ) as channel:
        stream = channel.unary_stream("/test.Peer/Hold")(b"", timeout=TIMEOUT_S)
        assert peer.holding.wait(WAIT_S)
        second = renew(certificates)
        answered_after_renewal = serial_call(channel)()
        # The old channel is still open while the stream is on it.
        old_channel_open = not is_closed(opened[0])
        peer.release.set()
        streamed = list(stream)
        old_channel_closed = until(lambda: is_closed(opened[0]), WAIT_S, interval_s=0.05)
        still_answered = serial_call(channel)()

    assert answered_after_renewal == second
    assert old_channel_open
    assert streamed == [b"done"]
    assert peer.seen["hold"] == [first]
    assert old_channel_closed
    assert still_answered == second
    assert len(opened) == 2


def test_a_certificate_not_matching_its_key_is_logged_and_the_previous_one_kept(
    certificates: Path, peer: Peer
) -> None:
    first = serial_in(certificates / "waiver.pem")
    with waivers_channel(certificates, peer) as channel:
        serial = serial_call(channel)
        assert serial() == first
        # Another identity's key beside the waiver's certificate: a pair that does not match.
        (certificates / "waiver-key.pem").write_bytes(
            (certificates / "operator-key.pem").read_bytes()
        )
        with structlog.testing.capture_logs() as captured:
            kept = [serial(), serial()]
        second = renew(certificates)
        renewed = serial()

    assert kept == [first, first]
    refusals = [
        line for line in captured if line["event"] == "tls_client_certificates_not_reloaded"
    ]
    assert [line["error_type"] for line in refusals] == ["ValueError"]  # logged once
    assert renewed == second != first
