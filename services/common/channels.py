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

The client certificate follows its files (`ReloadingChannel`): when cert-manager or the kubelet
renews them, the next calls present the new certificate, without a restart. A channel looks at
the files' modification times and sizes at most once every `CERTIFICATE_CHECK_INTERVAL_S`, as a
call starts; when they changed and the new certificate matches its key, it opens a channel with
the new files and sends every call from then on over it, and it closes the old channel once the
calls already on it have ended (closing it at once would cancel them; the score service's entry
stream is one of them). A certificate that does not match its key, or a file that cannot be
read, is logged once (`tls_client_certificates_not_reloaded`) and the previous files stay in use,
as the servers do (`services.common.tls`). Everything that holds the channel (the adapters'
stubs, the dependency-health watch) follows the new one, since it holds this one.

The channel also carries the caller's trace to the next service when tracing is on
(`services.common.tracing`).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import grpc
import structlog

from services.common.tls import TlsFiles, channel_credentials
from services.common.tracing import traced_channel

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()

ROUND_ROBIN_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
# gRPC waits longer and longer between attempts to reconnect to a peer that is gone, up to two
# minutes by default: a dependency back after a long outage would then be found only minutes
# later. Five seconds at most keeps recovery prompt and the attempts cheap.
RECONNECT_BACKOFF_MAX_MS = 5_000
# How often a channel looks whether its certificate files changed: a renewed certificate is
# presented from the first call this long after the files changed, at the latest. Looking is
# three stat calls; once a second keeps it off the path of every call.
CERTIFICATE_CHECK_INTERVAL_S = 1.0


def client_channel(
    address: str,
    tls_files: TlsFiles | None,
    *,
    certificate_check_interval_s: float = CERTIFICATE_CHECK_INTERVAL_S,
) -> grpc.Channel:
    """A channel to `address` (host:port, or a gRPC target such as dns:///name:port): mutual
    TLS with `tls_files`, presenting the newest certificate in them; plaintext with None."""
    options = [
        ("grpc.service_config", ROUND_ROBIN_SERVICE_CONFIG),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
    ]
    if tls_files is None:
        return traced_channel(grpc.insecure_channel(address, options=options))
    return traced_channel(
        ReloadingChannel(address, tls_files, options, check_interval_s=certificate_check_interval_s)
    )


# ----------------------------------------------------------------------------------------------
# A channel whose client certificate follows its files

ChannelOpener = Callable[[str, grpc.ChannelCredentials, Sequence[tuple[str, Any]]], grpc.Channel]
_Stamp = tuple[tuple[int, int], ...]


def _open_secure_channel(
    address: str, credentials: grpc.ChannelCredentials, options: Sequence[tuple[str, Any]]
) -> grpc.Channel:
    return grpc.secure_channel(address, credentials, options=options)


@dataclass(frozen=True)
class _Method:
    """A method as a stub asked for it: enough to ask each new channel for it again."""

    kind: str  # "unary_unary", "unary_stream", "stream_unary" or "stream_stream"
    path: str
    request_serializer: Callable[[Any], bytes] | None
    response_deserializer: Callable[[bytes], Any] | None
    registered: bool


@dataclass(eq=False)
class _Generation:
    """One channel of a `ReloadingChannel`, made with one version of the files."""

    channel: grpc.Channel
    stamp: _Stamp
    calls_in_flight: int = 0
    retired: bool = False
    multicallables: dict[_Method, Any] = field(default_factory=dict)


class ReloadingChannel(grpc.Channel):
    """A mutual TLS channel to `address` that presents the certificate its files hold now.

    Each call starts on the current channel and is counted there until it ends. When the
    files changed (checked as a call starts, at most every `check_interval_s`) and the new
    certificate matches its key, a new channel becomes current; the old one is closed once its
    last call has ended. Connectivity (`subscribe`) is the current channel's.
    """

    def __init__(
        self,
        address: str,
        files: TlsFiles,
        options: Sequence[tuple[str, Any]] = (),
        *,
        check_interval_s: float = CERTIFICATE_CHECK_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        open_channel: ChannelOpener = _open_secure_channel,
    ) -> None:
        self._address = address
        self._files = files
        self._options = tuple(options)
        self._check_interval_s = check_interval_s
        self._clock = clock
        self._open_channel = open_channel
        # Guards which channel is current, the retired ones and their counts of calls.
        self._lock = threading.Lock()
        # One call at a time looks at the files; the others go on with the current channel.
        self._checking = threading.Lock()
        # Guards the making of each channel's multicallables.
        self._making = threading.Lock()
        stamp = files.stamp()
        self._current = _Generation(self._open(channel_credentials(files)), stamp)
        self._retired: list[_Generation] = []
        # What was refused last (a stamp, or the error of a file that could not be read), so
        # that files left in a bad state are logged once, not at every check.
        self._refused: object = None
        self._next_check_s = clock() + check_interval_s
        self._closed = False

    # The four kinds of method a stub asks for, each answered by a multicallable that sends
    # every call to the channel current when the call starts.

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool = False,
    ) -> _UnaryUnaryBase:
        spec = _Method(
            "unary_unary", method, request_serializer, response_deserializer, _registered_method
        )
        return _FollowingUnaryUnary(self, spec)

    def unary_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool = False,
    ) -> _UnaryStreamBase:
        spec = _Method(
            "unary_stream", method, request_serializer, response_deserializer, _registered_method
        )
        return _FollowingUnaryStream(self, spec)

    def stream_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool = False,
    ) -> _StreamUnaryBase:
        spec = _Method(
            "stream_unary", method, request_serializer, response_deserializer, _registered_method
        )
        return _FollowingStreamUnary(self, spec)

    def stream_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool = False,
    ) -> _StreamStreamBase:
        spec = _Method(
            "stream_stream", method, request_serializer, response_deserializer, _registered_method
        )
        return _FollowingStreamStream(self, spec)

    def subscribe(
        self, callback: Callable[[grpc.ChannelConnectivity], None], try_to_connect: bool = False
    ) -> None:
        with self._lock:
            channel = self._current.channel
        channel.subscribe(callback, try_to_connect=try_to_connect)

    def unsubscribe(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        with self._lock:
            channel = self._current.channel
        channel.unsubscribe(callback)

    def close(self) -> None:
        """Closes every channel, cancelling the calls still on them (as gRPC's close does)."""
        with self._lock:
            self._closed = True
            channels = [self._current.channel, *(old.channel for old in self._retired)]
            self._retired.clear()
        for channel in channels:
            channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()

    # Calls

    def _begin_call(self) -> _Generation:
        if self._clock() >= self._next_check_s:
            self._reload_if_changed()
        with self._lock:
            generation = self._current
            generation.calls_in_flight += 1
            return generation

    def _end_call(self, generation: _Generation) -> None:
        with self._lock:
            generation.calls_in_flight -= 1
            idle = generation.retired and generation.calls_in_flight == 0
            if idle and generation in self._retired:
                self._retired.remove(generation)
            else:
                idle = False
        if idle:
            _close_elsewhere(generation.channel)

    def _multicallable(self, generation: _Generation, method: _Method) -> Any:
        multicallable = generation.multicallables.get(method)
        if multicallable is not None:
            return multicallable
        # Made once per channel, by one thread at a time, as a stub makes its multicallables
        # once: a registered method is registered with the channel when it is made.
        with self._making:
            multicallable = generation.multicallables.get(method)
            if multicallable is None:
                multicallable = getattr(generation.channel, method.kind)(
                    method.path,
                    method.request_serializer,
                    method.response_deserializer,
                    _registered_method=method.registered,
                )
                generation.multicallables[method] = multicallable
        return multicallable

    # The files

    def _open(self, credentials: grpc.ChannelCredentials) -> grpc.Channel:
        return self._open_channel(self._address, credentials, self._options)

    def _reload_if_changed(self) -> None:
        if self._closed or not self._checking.acquire(blocking=False):
            return
        try:
            self._next_check_s = self._clock() + self._check_interval_s
            try:
                stamp = self._files.stamp()
            except OSError as error:
                self._refuse(type(error).__name__, error)
                return
            if stamp in (self._current.stamp, self._refused):
                return
            try:
                # Reads the three files and checks that the certificate matches its key.
                credentials = channel_credentials(self._files)
            except (OSError, ValueError) as error:
                self._refuse(stamp, error)
                return
            self._renew(_Generation(self._open(credentials), stamp))
        finally:
            self._checking.release()

    def _renew(self, renewed: _Generation) -> None:
        calls_on_retired = 0
        with self._lock:
            retired = None if self._closed else self._current
            if retired is not None:
                self._current = renewed
                retired.retired = True
                calls_on_retired = retired.calls_in_flight
                if calls_on_retired:
                    self._retired.append(retired)
        if retired is None:  # closed while the new channel was being made
            renewed.channel.close()
            return
        self._refused = None
        log.info(
            "tls_client_certificates_reloaded",
            address=self._address,
            certificate_file=str(self._files.certificate_file),
            calls_on_previous_channel=calls_on_retired,
        )
        if calls_on_retired == 0:
            _close_elsewhere(retired.channel)

    def _refuse(self, refused: object, error: Exception) -> None:
        if refused == self._refused:
            return
        self._refused = refused
        log.warning(
            "tls_client_certificates_not_reloaded",
            address=self._address,
            certificate_file=str(self._files.certificate_file),
            error_type=type(error).__name__,
        )


def _close_elsewhere(channel: grpc.Channel) -> None:
    """Closes a retired channel on a thread of its own: its last call may end on gRPC's own
    thread (a done callback), and closing the channel there would wait on that very thread."""
    threading.Thread(target=channel.close, name="retired-channel-close", daemon=True).start()


# gRPC's multicallable classes are generic only in their type stubs.
if TYPE_CHECKING:
    _UnaryUnaryBase = grpc.UnaryUnaryMultiCallable[Any, Any]
    _UnaryStreamBase = grpc.UnaryStreamMultiCallable[Any, Any]
    _StreamUnaryBase = grpc.StreamUnaryMultiCallable[Any, Any]
    _StreamStreamBase = grpc.StreamStreamMultiCallable[Any, Any]
else:
    _UnaryUnaryBase = grpc.UnaryUnaryMultiCallable
    _UnaryStreamBase = grpc.UnaryStreamMultiCallable
    _StreamUnaryBase = grpc.StreamUnaryMultiCallable
    _StreamStreamBase = grpc.StreamStreamMultiCallable


class _Following:
    """What the multicallables of a `ReloadingChannel` share: a call that returns when it has
    ended (`_blocking`) is counted for as long as it runs; one that goes on after it returns
    (a future, a stream of answers) until gRPC reports it done."""

    def __init__(self, channel: ReloadingChannel, method: _Method) -> None:
        self._channel = channel
        self._method = method

    def _blocking(self, attribute: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        generation = self._channel._begin_call()
        try:
            multicallable = self._channel._multicallable(generation, self._method)
            return getattr(multicallable, attribute)(*args, **kwargs)
        finally:
            self._channel._end_call(generation)

    def _lasting(self, attribute: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        generation = self._channel._begin_call()
        try:
            multicallable = self._channel._multicallable(generation, self._method)
            call = getattr(multicallable, attribute)(*args, **kwargs)
        except BaseException:
            self._channel._end_call(generation)
            raise
        # Runs at once when the call has already ended.
        call.add_done_callback(lambda _call: self._channel._end_call(generation))
        return call


class _FollowingUnaryUnary(_Following, _UnaryUnaryBase):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._blocking("__call__", args, kwargs)

    def with_call(self, *args: Any, **kwargs: Any) -> Any:
        return self._blocking("with_call", args, kwargs)

    def future(self, *args: Any, **kwargs: Any) -> Any:
        return self._lasting("future", args, kwargs)


class _FollowingUnaryStream(_Following, _UnaryStreamBase):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._lasting("__call__", args, kwargs)


class _FollowingStreamUnary(_Following, _StreamUnaryBase):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._blocking("__call__", args, kwargs)

    def with_call(self, *args: Any, **kwargs: Any) -> Any:
        return self._blocking("with_call", args, kwargs)

    def future(self, *args: Any, **kwargs: Any) -> Any:
        return self._lasting("future", args, kwargs)


class _FollowingStreamStream(_Following, _StreamStreamBase):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._lasting("__call__", args, kwargs)


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
