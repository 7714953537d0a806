"""Channels from one Sesame service to another.

`client_channel` spreads calls over every address the target's name resolves to (gRPC's
round-robin policy): in Kubernetes the services find each other through headless Services,
whose DNS answer lists every ready pod, so each call goes to the next replica. gRPC's default
(pick_first) would send all of a client's calls to one replica for as long as its connection
lasts, since one HTTP/2 connection carries them all; a ClusterIP Service cannot help, because
kube-proxy balances connections, not calls. Servers age connections out
(`SESAME_<SERVICE>_MAX_CONNECTION_AGE_S`), and a client resolves the name again when one
closes, so replicas added later get their share. With one address (the local suite) round
robin is the same as pick_first.

With TLS files (the calling service's own certificate and CA, `services.common.tls`) the
channel is mutual TLS: it presents the service's certificate, which is how the callee knows
which service calls, and checks the callee's against the CA and the address's host name.

The channel also carries the caller's trace to the next service when tracing is on
(`services.common.tracing`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import grpc

from services.common.tls import TlsFiles, channel_credentials
from services.common.tracing import traced_channel

ROUND_ROBIN_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
# gRPC waits longer and longer between attempts to reconnect to a peer that is gone, up to two
# minutes by default: a dependency back after a long outage would then be found only minutes
# later. Five seconds at most keeps recovery prompt and the attempts cheap.
RECONNECT_BACKOFF_MAX_MS = 5_000


def client_channel(address: str, tls_files: TlsFiles | None) -> grpc.Channel:
    """A channel to `address` (host:port, or a gRPC target such as dns:///name:port): mutual
    TLS with `tls_files`, plaintext with None."""
    options = [
        ("grpc.service_config", ROUND_ROBIN_SERVICE_CONFIG),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
    ]
    if tls_files is None:
        channel = grpc.insecure_channel(address, options=options)
    else:
        channel = grpc.secure_channel(address, channel_credentials(tls_files), options=options)
    return traced_channel(channel)


LOCAL_CERTIFICATES = "var/certs"


def add_tls_arguments(parser: argparse.ArgumentParser, identity: str = "operator") -> None:
    """grpcurl's flags for a command-line tool's channel, defaulting to the local `identity`'s
    certificate (`make certs`); `--plaintext` for a service that runs without TLS."""
    parser.add_argument("--cacert", default=f"{LOCAL_CERTIFICATES}/ca.pem", help="the CA (PEM)")
    parser.add_argument(
        "--cert", default=f"{LOCAL_CERTIFICATES}/{identity}.pem", help="the client certificate"
    )
    parser.add_argument(
        "--key", default=f"{LOCAL_CERTIFICATES}/{identity}-key.pem", help="its private key"
    )
    parser.add_argument("--plaintext", action="store_true", help="no TLS (a plaintext service)")


def tool_channel(address: str, arguments: argparse.Namespace) -> grpc.Channel:
    """The channel `add_tls_arguments`' flags describe."""
    if arguments.plaintext:
        return grpc.insecure_channel(address)
    files = TlsFiles(Path(arguments.cert), Path(arguments.key), Path(arguments.cacert))
    return grpc.secure_channel(address, channel_credentials(files))
