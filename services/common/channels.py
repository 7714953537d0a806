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

The channel also carries the caller's trace to the next service when tracing is on
(`services.common.tracing`).
"""

from __future__ import annotations

import json

import grpc

from services.common.tracing import traced_channel

ROUND_ROBIN_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
# gRPC waits longer and longer between attempts to reconnect to a peer that is gone, up to two
# minutes by default: a dependency back after a long outage would then be found only minutes
# later. Five seconds at most keeps recovery prompt and the attempts cheap.
RECONNECT_BACKOFF_MAX_MS = 5_000


def client_channel(address: str) -> grpc.Channel:
    """An insecure channel to `address` (host:port, or a gRPC target such as dns:///name:port)."""
    channel = grpc.insecure_channel(
        address,
        options=[
            ("grpc.service_config", ROUND_ROBIN_SERVICE_CONFIG),
            ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
        ],
    )
    return traced_channel(channel)
