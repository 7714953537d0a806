"""`make load`: one ghz profile (deploy/ghz/*.json) against a running suite, reported as ghz
reports it.

    python -m tests.benchmarks.ghz_load --target 127.0.0.1:50051 \\
        --config deploy/ghz/ledger-get-account-summary.json [--output report.json] [--bundled]

Where `ghz` is on the PATH it runs the profile; elsewhere (this project's machines cannot install
it) the bundled load generator (`tests.benchmarks.loadgen`) reads the same file and writes the
same JSON summary: count, total, average, fastest, slowest, rps, latencyDistribution,
statusCodeDistribution, errorDistribution, histogram and options, with `details` off (null, as
ghz leaves it when it keeps none), so tooling that reads ghz's reports reads both.

The profile is a plain ghz config. The bundled generator understands the keys Sesame's profiles
use (call, insecure, concurrency, connections, duration, total with qps, timeout, data, metadata,
name, tags) and refuses the others rather than ignore them; its data templates are ghz's
(`{{.RequestNumber}}`, `{{.UUID}}`, `{{.Timestamp}}`, `{{newUUID}}`, `{{randomString 8}}`, …,
rendered into the JSON text before it is parsed), and an array of data is used round robin, one
element per request, as ghz does for unary calls.

How the bundled generator maps a profile onto loadgen: `concurrency` slots, one worker process
per connection (so `connections` is the number of connections); `duration` runs a closed loop
for that long; `total` with `qps` runs an open loop at `qps` for total/qps seconds, which issues
`total` requests give or take one per slot (ghz issues exactly `total`). Two differences remain
and are said here rather than hidden: latencies are only kept for successful calls, so
`average` is over those (ghz averages every call), and errors are counted by status code and
ErrorInfo reason (`errorDistribution` keys are those labels, not ghz's error strings).

Calls that act on objects another call creates (capture a hold, complete an order) name what
they need in the profile's tags (`"sesame-prepare": "open-holds"`, ghz keeps tags in its
report): before the run, this prepares that many objects through the services' own API and
runs a copy of the profile whose data is one element per object (under var/load/), for ghz and
the bundled generator alike. See deploy/ghz/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import itertools
import json
import os
import random
import re
import shutil
import string
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message

from services.common.access import ANY_CALLER, AccessPolicy
from services.common.tls import TlsFiles, channel_credentials
from services.datasets.consent import grant_consent
from tests.benchmarks.loadgen import LoadResult, Operation, OperationContext, run_load

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
PROFILES_DIRECTORY = REPOSITORY_ROOT / "deploy" / "ghz"
WORK_DIRECTORY = Path("var") / "load"
CONTRACT_MODULES = (
    "sesame.ledger.v1.ledger_service_pb2",
    "sesame.score.v1.score_service_pb2",
    "sesame.waiver.v1.waiver_service_pb2",
)
# ghz's config keys (its runner.Config) that the bundled generator follows.
SUPPORTED_KEYS = frozenset(
    {
        "call",
        "insecure",
        "cacert",
        "cert",
        "key",
        "total",
        "concurrency",
        "connections",
        "qps",
        "duration",
        "timeout",
        "data",
        "metadata",
        "name",
        "tags",
        "host",
        "format",
        "output",
        "cpus",
        "connect-timeout",
    }
)
# The rest of ghz's config keys: valid for ghz, refused by the bundled generator.
UNSUPPORTED_KEYS = frozenset(
    {
        "proto",
        "protoset",
        "skipTLS",
        "cname",
        "authority",
        "duration-stop",
        "max-duration",
        "data-file",
        "binary-file",
        "metadata-file",
        "stream-interval",
        "keepalive",
        "import-paths",
        "reflect-metadata",
        "debug",
        "enable-compression",
    }
)
GHZ_CONFIG_KEYS = SUPPORTED_KEYS | UNSUPPORTED_KEYS
PREPARE_TAG = "sesame-prepare"
# ghz's defaults (runner.Config): 50 in flight over one connection, 20 s per call.
CONCURRENCY_DEFAULT = 50
TIMEOUT_DEFAULT_S = 20.0
# ghz's percentiles of latencyDistribution, and its histogram's bucket count.
LATENCY_PERCENTAGES = (10, 25, 50, 75, 90, 95, 99)
HISTOGRAM_BUCKETS = 10
PREPARE_THREADS = 8
LEDGER_ADDRESS_DEFAULT = "127.0.0.1:50051"
PREPARE_DEADLINE_S = 30.0
# How long a preparation waits for the ledger's next signed checkpoint.
CHECKPOINT_WAIT_S = 150.0
PREPARED_OBJECTS_MAX = 100_000
# How long a streamed call whose write found it over waits for the server's status, and how
# often it looks (see `streamed_call`).
SERVER_STATUS_WAIT_S = 1.0
SERVER_STATUS_POLL_S = 0.005
RANDOM_STRING_LENGTH_MIN, RANDOM_STRING_LENGTH_MAX = 2, 16

_TEMPLATE_ACTION = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
# ghz names status codes as Go's gRPC does.
GO_CODE_NAMES = {
    code: "".join(part.capitalize() for part in code.name.split("_")) for code in grpc.StatusCode
}
GO_CODE_NAMES[grpc.StatusCode.OK] = "OK"
GO_CODE_NAMES[grpc.StatusCode.CANCELLED] = "Canceled"


# ----------------------------------------------------------------------------------------------
# Profiles


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration ("10s", "1m30s", "250ms")."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(number) * _DURATION_UNITS_S[unit] for number, unit in parts)


@dataclass(frozen=True)
class LoadProfile:
    """A ghz config as the bundled generator reads it."""

    path: Path
    raw: dict[str, Any]

    @classmethod
    def read(cls, path: Path) -> LoadProfile:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: a ghz config is a JSON object")
        unknown = set(raw) - GHZ_CONFIG_KEYS
        if unknown:
            raise ValueError(f"{path}: not ghz config keys: {sorted(unknown)}")
        return cls(path, raw)

    @property
    def name(self) -> str:
        return str(self.raw.get("name") or self.path.stem)

    @property
    def call(self) -> str:
        return str(self.raw["call"])

    @property
    def concurrency(self) -> int:
        return int(self.raw.get("concurrency", CONCURRENCY_DEFAULT))

    @property
    def connections(self) -> int:
        return int(self.raw.get("connections", 1))

    @property
    def total(self) -> int:
        return int(self.raw.get("total", 0))

    @property
    def qps(self) -> float:
        return float(self.raw.get("qps", 0))

    @property
    def duration_s(self) -> float:
        return parse_go_duration(self.raw["duration"]) if self.raw.get("duration") else 0.0

    @property
    def timeout_s(self) -> float:
        timeout = self.raw.get("timeout")
        return parse_go_duration(timeout) if timeout else TIMEOUT_DEFAULT_S

    @property
    def data(self) -> list[dict[str, Any]]:
        data = self.raw.get("data", {})
        return data if isinstance(data, list) else [data]

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.raw.get("metadata") or {})

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.raw.get("tags") or {})

    @property
    def tls_files(self) -> tuple[str, str, str] | None:
        """(certificate, key, CA) for mutual TLS (ghz's cert, key, cacert); None in plaintext."""
        if self.raw.get("insecure"):
            return None
        return (str(self.raw["cert"]), str(self.raw["key"]), str(self.raw["cacert"]))

    def with_certificates(self, directory: Path, path: Path) -> LoadProfile:
        """A copy at `path` calling with mutual TLS as the local identity the access policy
        admits for its call (the certificates of `directory`, `make certs`)."""
        stem = identity_file_for(self.call)
        raw = {key: value for key, value in self.raw.items() if key != "insecure"}
        raw.update(
            name=self.name,
            cacert=str((directory / "ca.pem").resolve()),
            cert=str((directory / f"{stem}.pem").resolve()),
            key=str((directory / f"{stem}-key.pem").resolve()),
        )
        return LoadProfile(path, raw)

    def refusals(self) -> list[str]:
        """Why the bundled generator cannot run this profile as ghz would; empty when it can."""
        problems = [f"{key} is not supported" for key in UNSUPPORTED_KEYS if self.raw.get(key)]
        if not self.raw.get("insecure") and not all(
            self.raw.get(key) for key in ("cacert", "cert", "key")
        ):
            problems.append("plaintext (insecure: true) or mutual TLS (cacert, cert and key)")
        if self.duration_s <= 0 and not (self.total > 0 and self.qps > 0):
            problems.append("give a duration, or a total with a qps")
        return problems

    def run_duration_s(self) -> float:
        """How long the bundled generator runs: the duration, or total/qps."""
        return self.duration_s if self.duration_s > 0 else self.total / self.qps

    def with_data(self, data: list[dict[str, Any]], path: Path) -> LoadProfile:
        """A copy at `path` with this data, keeping this profile's name."""
        return LoadProfile(path, {**self.raw, "name": self.name, "data": data})


# The local certificates (services.common.certificates) of the operator, the demo merchant, whose
# orders the profiles make, and the user u-7, whose own records the user's profiles act on.
_IDENTITY_FILES = {"operator": "operator", "merchant": "merchant-sesame-demo", "user": "user-u-7"}


def identity_file_for(call: str) -> str:
    """The local identity that may make `call` on the profiles' data: the first caller the
    access policy admits for it that is a service (its own certificate), an operator, the demo
    merchant or the user u-7."""
    service, _, name = call.rpartition(".")
    for rule in AccessPolicy.load().methods.get(f"{service}/{name}", ()):
        if rule.kind == "service" and rule.name:
            return rule.name
        if rule.kind in _IDENTITY_FILES:
            return _IDENTITY_FILES[rule.kind]
        if rule.kind == ANY_CALLER:
            return "operator"
    raise ValueError(f"no local identity may call {call}")


def profile_path(profile: str) -> Path:
    """A path as given, or a profile's name in deploy/ghz."""
    path = Path(profile)
    if path.exists():
        return path
    named = PROFILES_DIRECTORY / f"{profile.removesuffix('.json')}.json"
    if named.exists():
        return named
    raise FileNotFoundError(f"no profile {profile!r} (nor {named})")


# ----------------------------------------------------------------------------------------------
# Calls


@dataclass(frozen=True)
class Method:
    """A call's descriptor and what it takes and returns."""

    descriptor: descriptor.MethodDescriptor
    request_class: type[Message]
    response_class: type[Message]

    @property
    def path(self) -> str:
        return f"/{self.descriptor.containing_service.full_name}/{self.descriptor.name}"

    @property
    def client_streaming(self) -> bool:
        return bool(self.descriptor.client_streaming)

    @property
    def server_streaming(self) -> bool:
        return bool(self.descriptor.server_streaming)


def resolve_method(call: str) -> Method:
    """ghz's call name ("package.Service.Method" or "package.Service/Method") resolved from the
    generated contracts."""
    for module in CONTRACT_MODULES:
        importlib.import_module(module)
    service_name, _, method_name = call.replace("/", ".").rpartition(".")
    service = descriptor_pool.Default().FindServiceByName(service_name)
    method = service.methods_by_name.get(method_name)
    if method is None:
        raise ValueError(f"{service_name} has no method {method_name}")
    return Method(
        method,
        message_factory.GetMessageClass(method.input_type),
        message_factory.GetMessageClass(method.output_type),
    )


def call_template_data(method: Method, worker_id: str, request_number: int) -> dict[str, Any]:
    """What ghz's data templates see for one request (its runner.CallData)."""
    now = datetime.now(UTC)
    unix_ns = time.time_ns()
    return {
        "WorkerID": worker_id,
        "RequestNumber": request_number,
        "FullyQualifiedName": method.descriptor.full_name,
        "MethodName": method.descriptor.name,
        "ServiceName": method.descriptor.containing_service.name,
        "InputName": method.descriptor.input_type.name,
        "OutputName": method.descriptor.output_type.name,
        "IsClientStreaming": method.client_streaming,
        "IsServerStreaming": method.server_streaming,
        "Timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "TimestampUnix": unix_ns // 1_000_000_000,
        "TimestampUnixMilli": unix_ns // 1_000_000,
        "TimestampUnixNano": unix_ns,
        "UUID": str(uuid.uuid4()),
    }


def render_template(text: str, values: Mapping[str, Any], chooser: random.Random) -> str:
    """ghz's template actions this profile set uses; anything else is refused, not ignored."""

    def action(match: re.Match[str]) -> str:
        expression = match[1]
        if expression.startswith("."):
            name = expression[1:]
            if name not in values:
                raise ValueError(f"unknown template field {{{{{expression}}}}}")
            value = values[name]
            return ("true" if value else "false") if isinstance(value, bool) else str(value)
        if expression == "newUUID":
            return str(uuid.uuid4())
        function, _, argument = expression.partition(" ")
        if function == "randomString" and argument.strip().lstrip("-").isdigit():
            length = int(argument)
            if length <= 0:
                length = chooser.randint(RANDOM_STRING_LENGTH_MIN, RANDOM_STRING_LENGTH_MAX)
            alphabet = string.ascii_letters + string.digits
            return "".join(chooser.choice(alphabet) for _ in range(length))
        raise ValueError(f"unsupported template action {{{{{expression}}}}}")

    return _TEMPLATE_ACTION.sub(action, text)


def request_messages(
    method: Method,
    data: Sequence[Mapping[str, Any]],
    request_number: int,
    worker_id: str,
    chooser: random.Random,
) -> list[Message]:
    """The request(s) of one call: for a unary request, data[n % len] (ghz's round robin); for a
    client stream, every element in order."""
    values = call_template_data(method, worker_id, request_number)
    items = data if method.client_streaming else [data[request_number % len(data)]]
    return [
        json_format.Parse(
            render_template(json.dumps(item), values, chooser), method.request_class()
        )
        for item in items
    ]


async def ghz_call(context: OperationContext) -> Operation:
    """loadgen's operation factory: one call of the profile's method per operation."""
    arguments = context.arguments
    method = resolve_method(arguments["call"])
    data: list[dict[str, Any]] = arguments["data"]
    metadata = tuple(arguments["metadata"].items()) or None
    concurrency: int = arguments["concurrency"]
    worker_id = f"g{context.process_index}c{context.slot_index}"
    # Unique over the run, as ghz's request numbers are: slot i takes i, i + n, i + 2n, …
    request_numbers = itertools.count(context.slot_index, concurrency)
    serializer, deserializer = (
        method.request_class.SerializeToString,
        method.response_class.FromString,
    )
    channel = context.channel
    if method.client_streaming and method.server_streaming:
        stream_stream = channel.stream_stream(method.path, serializer, deserializer)
    elif method.client_streaming:
        stream_unary = channel.stream_unary(method.path, serializer, deserializer)
    elif method.server_streaming:
        unary_stream = channel.unary_stream(method.path, serializer, deserializer)
    else:
        unary_unary = channel.unary_unary(method.path, serializer, deserializer)

    async def operation() -> None:
        requests = request_messages(method, data, next(request_numbers), worker_id, context.random)
        timeout = context.call_timeout_s
        if method.client_streaming and method.server_streaming:
            call = stream_stream(timeout=timeout, metadata=metadata)
            await streamed_call(call, requests, server_streaming=True)
        elif method.client_streaming:
            call = stream_unary(timeout=timeout, metadata=metadata)
            await streamed_call(call, requests, server_streaming=False)
        elif method.server_streaming:
            async for _ in unary_stream(requests[0], timeout=timeout, metadata=metadata):
                pass
        else:
            await unary_unary(requests[0], timeout=timeout, metadata=metadata)

    return operation


async def streamed_call(call: Any, requests: Sequence[Message], *, server_streaming: bool) -> None:
    """A call that streams `requests`: writes them while it reads what comes back, and raises
    the status the server ended the call with.

    The requests are written here, not handed to gRPC as an iterator, for the case of a server
    that ends the call while requests are still being written (a bad batch ends
    StreamScoreFeatures). A write in flight when the server's status arrives fails, and gRPC's
    asyncio client then gives the call the status INTERNAL ("Internal error from Core"): over
    the server's status when that came first, so that the call reports it no more, or until it
    comes. ghz (Go's client) stops writing and reports the server's status; so does this:
    writing stops at the first write that fails, the status is noted the moment the call ends
    (a done callback), and a call that ends with INTERNAL after a failed write reports the
    server's status instead, the one noted or the one that comes after.
    """
    noted: list[CallStatus] = []
    call.add_done_callback(lambda ended: noted.extend(_status_now(ended)))
    writing = asyncio.create_task(_write_requests(call, requests))
    try:
        try:
            if server_streaming:
                async for _ in call:
                    pass
            else:
                await call
        except grpc.aio.AioRpcError as error:
            write_failure = await writing
            if write_failure is None or error.code() != grpc.StatusCode.INTERNAL:
                raise
            server_status = await _status_the_server_sent(call, error, noted)
            if server_status is None:
                raise
            if server_status.code != grpc.StatusCode.OK:
                raise server_status.error() from None
        await writing
    finally:
        if not writing.done():
            writing.cancel()


@dataclass(frozen=True)
class CallStatus:
    """How a call ended, as the client saw it at one moment."""

    code: grpc.StatusCode
    details: str
    initial_metadata: Any
    trailing_metadata: Any
    debug_error_string: str

    def error(self) -> grpc.aio.AioRpcError:
        return grpc.aio.AioRpcError(
            self.code,
            self.initial_metadata,
            self.trailing_metadata,
            self.details,
            self.debug_error_string,
        )


def _status_now(call: Any) -> list[CallStatus]:
    """The ended call's status, read at once (in a done callback): gRPC's asyncio call offers
    its status only through coroutines, which return without waiting once the status is set,
    as it is when done callbacks run. Empty should one of them wait after all."""
    parts = []
    for read in (
        call.code,
        call.details,
        call.initial_metadata,
        call.trailing_metadata,
        call.debug_error_string,
    ):
        coroutine = read()
        try:
            coroutine.send(None)
        except StopIteration as finished:
            parts.append(finished.value)
            continue
        coroutine.close()
        return []
    return [CallStatus(*parts)]


async def _write_requests(call: Any, requests: Sequence[Message]) -> Exception | None:
    """Writes every request and half-closes; what stopped the writing early (the call had
    ended), or None."""
    try:
        for request in requests:
            await call.write(request)
        await call.done_writing()
    except Exception as error:  # the call is over: its status, read elsewhere, says why
        return error
    return None


async def _status_the_server_sent(
    call: Any, client_error: grpc.aio.AioRpcError, noted: Sequence[CallStatus]
) -> CallStatus | None:
    """The status the server ended the call with: the one noted when the call ended, unless
    that was the client's own INTERNAL, in which case the server's replaces it when it comes.
    None when it does not come in time."""
    client_status = (client_error.code(), client_error.details())
    for status in noted:
        if (status.code, status.details) != client_status:
            return status
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + SERVER_STATUS_WAIT_S
    while loop.time() < give_up_at:
        await asyncio.sleep(SERVER_STATUS_POLL_S)
        now = _status_now(call)
        if now and (now[0].code, now[0].details) != client_status:
            return now[0]
    return None


# ----------------------------------------------------------------------------------------------
# The report


def latency_distribution(ok_latencies_s: Sequence[float]) -> list[dict[str, int]]:
    """ghz's latencyDistribution: the same percentages and the same rank rule."""
    ordered = sorted(ok_latencies_s)
    if not ordered:
        return []
    distribution = []
    for percentage in LATENCY_PERCENTAGES:
        position = percentage / 100 * len(ordered)
        index = int(position)
        if position == index:
            index -= 1
        latency_s = ordered[max(0, index)]
        distribution.append({"percentage": percentage, "latency": round(latency_s * 1e9)})
    return distribution


def histogram(ok_latencies_s: Sequence[float]) -> list[dict[str, float]]:
    """ghz's histogram: ten even buckets from the fastest to the slowest call, and the slowest."""
    ordered = sorted(ok_latencies_s)
    if not ordered:
        return []
    fastest, slowest = ordered[0], ordered[-1]
    width = (slowest - fastest) / HISTOGRAM_BUCKETS
    marks = [fastest + width * index for index in range(HISTOGRAM_BUCKETS)] + [slowest]
    counts = [0] * len(marks)
    bucket = 0
    for latency_s in ordered:
        while latency_s > marks[bucket] and bucket < len(marks) - 1:
            bucket += 1
        counts[bucket] += 1
    return [
        {"mark": mark, "count": count, "frequency": count / len(ordered)}
        for mark, count in zip(marks, counts, strict=True)
    ]


def go_code_name(error_kind: str) -> str:
    """ "FAILED_PRECONDITION/SOME_REASON" (loadgen's label) as ghz names the code."""
    code_name = error_kind.partition("/")[0]
    code = grpc.StatusCode.__members__.get(code_name)
    return GO_CODE_NAMES[code] if code is not None else "Unknown"


def ghz_report(profile: LoadProfile, target: str, result: LoadResult) -> dict[str, Any]:
    """The summary ghz writes with `--format json`, details off."""
    ok_latencies_s = result.latencies_s
    count = result.operations + result.errors
    total_ns = round(result.duration_s * 1e9)
    status_codes: dict[str, int] = {"OK": result.operations} if result.operations else {}
    errors: dict[str, int] = {}
    for kind, kind_count in result.error_kinds.items():
        code_name = go_code_name(kind)
        status_codes[code_name] = status_codes.get(code_name, 0) + kind_count
        errors[f"rpc error: code = {code_name} {kind}"] = kind_count
    average_ns = round(sum(ok_latencies_s) / len(ok_latencies_s) * 1e9) if ok_latencies_s else 0
    return {
        "name": profile.name,
        "endReason": "normal",
        "options": {
            "host": target,
            "call": profile.call,
            "insecure": profile.tls_files is None,
            "total": profile.total,
            "concurrency": profile.concurrency,
            "qps": int(profile.qps),
            "connections": profile.connections,
            "duration": round(profile.duration_s * 1e9),
            "timeout": round(profile.timeout_s * 1e9),
            "data": profile.raw.get("data"),
            "metadata": profile.raw.get("metadata"),
            "binary": False,
            "CPUs": os.cpu_count() or 1,
            "name": profile.name,
        },
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "count": count,
        "total": total_ns,
        "average": average_ns,
        "fastest": round(min(ok_latencies_s) * 1e9) if ok_latencies_s else 0,
        "slowest": round(max(ok_latencies_s) * 1e9) if ok_latencies_s else 0,
        "rps": count / result.duration_s if result.duration_s > 0 else 0.0,
        "errorDistribution": errors,
        "statusCodeDistribution": status_codes,
        "latencyDistribution": latency_distribution(ok_latencies_s),
        "histogram": histogram(ok_latencies_s),
        "details": None,
        "tags": profile.tags,
    }


# ----------------------------------------------------------------------------------------------
# Preparing the objects a call acts on


@dataclass
class Preparation:
    """Objects made through the services' own API, each a fragment of one request's data."""

    fragments: list[dict[str, Any]] = field(default_factory=list)


def prepared_count(profile: LoadProfile) -> int:
    """One object per request for a run of `total` requests (and one more per slot, since the
    bundled generator may issue that many more); a few hundred, reused, for a timed run."""
    count = profile.total + profile.concurrency if profile.total else 200
    return min(count, PREPARED_OBJECTS_MAX)


def prepare(
    profile: LoadProfile,
    target: str,
    ledger_address: str,
    run_id: str,
    certificates: Path | None = None,
) -> Preparation:
    """Makes the objects the profile's tag names: through the ledger (at `ledger_address`
    unless the profile calls the ledger itself) or the waiver (the target); with mutual TLS as
    the local identity that may make them when `certificates` names the local ones."""
    kind = profile.tags.get(PREPARE_TAG, "")
    if kind not in PREPARERS:
        raise ValueError(f"{profile.path}: unknown {PREPARE_TAG} {kind!r}")
    service, preparer = PREPARERS[kind]
    calls_the_ledger = profile.call.startswith("sesame.ledger.")
    address = ledger_address if service == "ledger" and not calls_the_ledger else target
    if certificates is None:
        channel = grpc.insecure_channel(address)
    else:
        files = tls_files(certificates, PREPARER_IDENTITY_FILES[kind])
        channel = grpc.secure_channel(address, channel_credentials(files))
    consent = consent_granter(target if calls_the_ledger else ledger_address, certificates)
    with channel:
        return Preparation(preparer(channel, run_id, prepared_count(profile), consent))


ConsentGranter = Callable[[Sequence[str]], None]


def consent_granter(ledger_address: str, certificates: Path | None) -> ConsentGranter:
    """Grants users' consent to be scored through the ledger, as the local operator under
    mutual TLS: the users a profile's orders and scores are for consent first, or the score
    service refuses them (CONSENT_MISSING) and the waiver their orders."""

    def grant(user_ids: Sequence[str]) -> None:
        if certificates is None:
            channel = grpc.insecure_channel(ledger_address)
        else:
            files = tls_files(certificates, "operator")
            channel = grpc.secure_channel(ledger_address, channel_credentials(files))
        with channel:
            grant_consent(
                channel,
                user_ids,
                request_id_prefix="load-consent-",
                deadline_s=PREPARE_DEADLINE_S,
                threads=PREPARE_THREADS,
            )

    return grant


def tls_files(directory: Path, file_stem: str) -> TlsFiles:
    return TlsFiles(
        directory / f"{file_stem}.pem", directory / f"{file_stem}-key.pem", directory / "ca.pem"
    )


def _order_window(
    channel: grpc.Channel, run_id: str, count: int, consent: ConsentGranter
) -> list[dict[str, Any]]:
    """A time window from now on (CreateOrder): ghz's templates cannot add to a time, and the
    waiver takes only windows that end within the year."""
    now = datetime.now(UTC).replace(microsecond=0)
    window = {
        "start_time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end_time": (now + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return [{"time_range": window}]


def _in_parallel(function: Callable[[int], dict[str, Any]], count: int) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=PREPARE_THREADS) as pool:
        return list(pool.map(function, range(count)))


def _money(amount_minor: int) -> Any:
    from sesame.type.v1.money_pb2 import Money

    return Money(currency_code="CNY", amount_minor=amount_minor)


def _timestamp(moment: datetime) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    timestamp = Timestamp()
    timestamp.FromDatetime(moment)
    return timestamp


def _ledger(channel: grpc.Channel) -> Any:
    from sesame.ledger.v1 import ledger_service_pb2_grpc

    return ledger_service_pb2_grpc.LedgerServiceStub(channel)


def _capacity_holders(
    channel: grpc.Channel, run_id: str, count: int, consent: ConsentGranter
) -> list[dict[str, Any]]:
    """Users with room for any number of small holds (PlaceHold)."""
    from sesame.ledger.v1 import ledger_service_pb2 as ledger

    stub = _ledger(channel)
    holders = []
    for index in range(min(count, PREPARE_THREADS * 4)):
        user_id = f"{run_id}-holder-{index}"
        stub.SetWaiverCapacity(
            ledger.SetWaiverCapacityRequest(
                request_id=f"{user_id}-capacity", user_id=user_id, capacity=_money(10**12)
            ),
            timeout=PREPARE_DEADLINE_S,
        )
        holders.append({"user_id": user_id})
    return holders


def _open_holds(
    channel: grpc.Channel, run_id: str, count: int, consent: ConsentGranter
) -> list[dict[str, Any]]:
    """Open holds (CaptureHold, ReleaseHold, GetHold)."""
    from sesame.ledger.v1 import ledger_service_pb2 as ledger

    holders = _capacity_holders(channel, run_id, count, consent)
    stub = _ledger(channel)

    def place(index: int) -> dict[str, Any]:
        request = ledger.PlaceHoldRequest(
            request_id=f"{run_id}-hold-{index}",
            user_id=holders[index % len(holders)]["user_id"],
            amount=_money(10_000),
            expires_in={"seconds": 86_400},
            reference=f"{run_id}-{index}",
        )
        return {"hold_id": stub.PlaceHold(request, timeout=PREPARE_DEADLINE_S).hold.hold_id}

    return _in_parallel(place, count)


def _open_obligations(
    channel: grpc.Channel, run_id: str, count: int, consent: ConsentGranter
) -> list[dict[str, Any]]:
    """Open obligations with a large amount due (RecordPayment, ReduceObligation, CloseObligation,
    GetObligation)."""
    from sesame.ledger.v1 import ledger_service_pb2 as ledger

    stub = _ledger(channel)
    due_time = _timestamp(datetime.now(UTC) + timedelta(days=30))

    def create(index: int) -> dict[str, Any]:
        request = ledger.CreateObligationRequest(
            request_id=f"{run_id}-obligation-{index}",
            user_id=f"{run_id}-debtor-{index}",
            amount_due=_money(1_000_000),
            due_time=due_time,
            purpose="load test",
        )
        obligation = stub.CreateObligation(request, timeout=PREPARE_DEADLINE_S).obligation
        return {"obligation_id": obligation.obligation_id}

    return _in_parallel(create, count)


def _partner_report(user_id: str) -> Any:
    from sesame.ledger.v1 import ledger_service_pb2 as ledger

    statements = [
        ledger.Statement(
            period=ledger.StatementPeriod(year=2005, month=month),
            balance=_money(200_000),
            amount_paid=_money(20_000),
            repayment_status=ledger.REPAYMENT_STATUS_REVOLVING,
        )
        for month in range(4, 10)
    ]
    return ledger.PartnerReport(
        user_id=user_id,
        partner_id="load-partner",
        credit_line=_money(1_000_000),
        statements=statements,
    )


def _credit_histories(
    channel: grpc.Channel, run_id: str, count: int, consent: ConsentGranter
) -> list[dict[str, Any]]:
    """Users with six months of partner statements who consent to be scored (the ledger's
    reads, GetScore)."""
    from sesame.ledger.v1 import ledger_service_pb2 as ledger

    users = [f"{run_id}-user-{index}" for index in range(count)]
    stub = _ledger(channel)
    batch_size = 50
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        stub.RecordPartnerStatements(
            ledger.RecordPartnerStatementsRequest(
                request_id=f"{run_id}-statements-{start}",
                reports=[_partner_report(user_id) for user_id in batch],
            ),
            timeout=PREPARE_DEADLINE_S * 3,
        )
    consent(users)
    return [{"user_id": user_id} for user_id in users]


def _checkpointed_histories(
    channel: grpc.Channel, run_id: str, count: int, consent: ConsentGranter
) -> list[dict[str, Any]]:
    """Such users once a signed checkpoint covers them (GetCheckpointProof): the ledger signs
    one every SESAME_LEDGER_CHECKPOINT_INTERVAL_S (a minute under `make run`), so this waits
    for the next."""
    from sesame.ledger.v1 import ledger_service_pb2 as ledger

    users = _credit_histories(channel, run_id, count, consent)
    stub = _ledger(channel)
    last = ledger.GetCheckpointProofRequest(user_id=users[-1]["user_id"])
    deadline = time.monotonic() + CHECKPOINT_WAIT_S
    while True:
        try:
            stub.GetCheckpointProof(last, timeout=PREPARE_DEADLINE_S)
            return users
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
        time.sleep(1.0)


def _credit_history_batches(
    channel: grpc.Channel, run_id: str, count: int, consent: ConsentGranter
) -> list[dict[str, Any]]:
    """Batches of ten such users (BatchGetScores)."""
    users = [item["user_id"] for item in _credit_histories(channel, run_id, count * 10, consent)]
    return [{"user_ids": users[start : start + 10]} for start in range(0, len(users), 10)]


def _create_order(channel: grpc.Channel, run_id: str, index: int) -> dict[str, Any]:
    from sesame.type.v1.time_range_pb2 import TimeRange
    from sesame.waiver.v1 import waiver_service_pb2 as waiver, waiver_service_pb2_grpc

    now = datetime.now(UTC)
    out_order_no = f"{run_id}-order-{index}"
    waiver_service_pb2_grpc.WaiverServiceStub(channel).CreateOrder(
        waiver.CreateOrderRequest(
            request_id=f"{out_order_no}-create",
            merchant_id="sesame-demo",
            out_order_no=out_order_no,
            user_id=f"{run_id}-rider-{index}",
            scenario_id="bike",
            risk_fund_type=waiver.RISK_FUND_TYPE_DEPOSIT,
            risk_amount=_money(9_900),
            time_range=TimeRange(
                start_time=_timestamp(now - timedelta(minutes=1)),
                end_time=_timestamp(now + timedelta(hours=12)),
            ),
        ),
        timeout=PREPARE_DEADLINE_S,
    )
    return {"merchant_id": "sesame-demo", "out_order_no": out_order_no}


def _riders(run_id: str, count: int) -> list[str]:
    return [f"{run_id}-rider-{index}" for index in range(count)]


def _consenting_riders(
    channel: grpc.Channel, run_id: str, count: int, consent: ConsentGranter
) -> list[dict[str, Any]]:
    """Users who consent to be scored, each with a time window from now on (CreateOrder): the
    waiver refuses an order for a user who did not consent. A timed run uses them round robin,
    so a user's later orders meet the capacity the earlier ones hold (a partial or no waiver,
    answered OK, as it would be in production)."""
    riders = _riders(run_id, count)
    consent(riders)
    (window,) = _order_window(channel, run_id, count, consent)
    return [{"user_id": rider, **window} for rider in riders]


def _orders(
    channel: grpc.Channel, run_id: str, count: int, consent: ConsentGranter
) -> list[dict[str, Any]]:
    """Orders in progress (GetOrder, CompleteOrder, CancelOrder)."""
    consent(_riders(run_id, count))
    return _in_parallel(lambda index: _create_order(channel, run_id, index), count)


def _awaiting_payment_orders(
    channel: grpc.Channel, run_id: str, count: int, consent: ConsentGranter
) -> list[dict[str, Any]]:
    """Completed orders with 3 yuan to pay (SyncPayment, ModifyOrder)."""
    from sesame.waiver.v1 import waiver_service_pb2 as waiver, waiver_service_pb2_grpc

    stub = waiver_service_pb2_grpc.WaiverServiceStub(channel)
    consent(_riders(run_id, count))

    def complete(index: int) -> dict[str, Any]:
        order = _create_order(channel, run_id, index)
        stub.CompleteOrder(
            waiver.CompleteOrderRequest(
                request_id=f"{order['out_order_no']}-complete",
                total_amount=_money(300),
                end_time=_timestamp(datetime.now(UTC)),
                **order,
            ),
            timeout=PREPARE_DEADLINE_S,
        )
        return order

    return _in_parallel(complete, count)


def _negative_records(
    channel: grpc.Channel, run_id: str, count: int, consent: ConsentGranter
) -> list[dict[str, Any]]:
    """Obligations of the user u-7 closed defaulted (AttachStatement): a statement is the
    user's own, so the profile speaks on u-7's channel, the one local user certificate."""
    from sesame.ledger.v1 import ledger_service_pb2 as ledger

    stub = _ledger(channel)
    due_time = _timestamp(datetime.now(UTC) - timedelta(days=1))

    def default(index: int) -> dict[str, Any]:
        created = ledger.CreateObligationRequest(
            request_id=f"{run_id}-negative-{index}",
            user_id=NEGATIVE_RECORDS_USER,
            amount_due=_money(300),
            due_time=due_time,
            purpose="load test",
        )
        obligation = stub.CreateObligation(created, timeout=PREPARE_DEADLINE_S).obligation
        stub.CloseObligation(
            ledger.CloseObligationRequest(
                request_id=f"{run_id}-negative-{index}-close",
                obligation_id=obligation.obligation_id,
                outcome=ledger.OBLIGATION_OUTCOME_DEFAULTED,
            ),
            timeout=PREPARE_DEADLINE_S,
        )
        return {"obligation_id": obligation.obligation_id}

    return _in_parallel(default, count)


NEGATIVE_RECORDS_USER = "u-7"
Preparer = Callable[[grpc.Channel, str, int, ConsentGranter], list[dict[str, Any]]]
# What each `sesame-prepare` tag makes, and through which service.
# Who makes each kind of object when the suite runs with mutual TLS (the access policy).
PREPARER_IDENTITY_FILES = {
    "consenting-riders": "operator",
    "negative-records": "waiver",
    "orders": "merchant-sesame-demo",
    "awaiting-payment-orders": "merchant-sesame-demo",
    "capacity-holders": "waiver",
    "open-holds": "waiver",
    "open-obligations": "waiver",
    "credit-histories": "operator",
    "credit-history-batches": "operator",
    "checkpointed-histories": "operator",
}
PREPARERS: dict[str, tuple[str, Preparer]] = {
    "consenting-riders": ("ledger", _consenting_riders),
    "negative-records": ("ledger", _negative_records),
    "capacity-holders": ("ledger", _capacity_holders),
    "open-holds": ("ledger", _open_holds),
    "open-obligations": ("ledger", _open_obligations),
    "credit-histories": ("ledger", _credit_histories),
    "credit-history-batches": ("ledger", _credit_history_batches),
    "checkpointed-histories": ("ledger", _checkpointed_histories),
    "orders": ("waiver", _orders),
    "awaiting-payment-orders": ("waiver", _awaiting_payment_orders),
}


# ----------------------------------------------------------------------------------------------
# Running


def run_bundled(profile: LoadProfile, target: str) -> dict[str, Any]:
    """The profile through the bundled generator; ghz's report."""
    problems = profile.refusals()
    if problems:
        raise ValueError(
            f"{profile.path}: the bundled generator cannot run it: {'; '.join(problems)}"
        )
    resolve_method(profile.call)  # fail here on a bad call name, not in every worker
    concurrency = profile.concurrency
    result = run_load(
        [target],
        "tests.benchmarks.ghz_load:ghz_call",
        concurrency=concurrency,
        processes=max(1, min(profile.connections, concurrency)),
        duration_s=profile.run_duration_s(),
        warmup_s=0.0,
        arguments={
            "call": profile.call,
            "data": profile.data,
            "metadata": profile.metadata,
            "concurrency": concurrency,
        },
        call_timeout_s=profile.timeout_s,
        rate_per_s=profile.qps if profile.duration_s <= 0 else None,
        tls_files=profile.tls_files,
    )
    return ghz_report(profile, target, result)


def run_ghz(ghz: str, profile: LoadProfile, target: str, output: Path) -> dict[str, Any]:
    """The profile through ghz itself; its report, details off."""
    subprocess.run(
        [ghz, "--config", str(profile.path), "--format", "json", "--output", str(output), target],
        check=True,
    )
    report: dict[str, Any] = json.loads(output.read_text(encoding="utf-8"))
    report["details"] = None
    return report


def prepared_profile(
    profile: LoadProfile,
    target: str,
    work_directory: Path,
    ledger_address: str = "",
    certificates: Path | None = None,
) -> LoadProfile:
    """The profile itself, or a copy whose data is one element per prepared object; with
    `certificates` (the local ones), a copy calling with mutual TLS (`with_certificates`)."""
    if certificates is not None:
        work_directory.mkdir(parents=True, exist_ok=True)
        path = work_directory / f"{profile.path.stem}-tls.json"
        profile = profile.with_certificates(certificates, path)
        path.write_text(json.dumps(profile.raw, indent=1), encoding="utf-8")
    if PREPARE_TAG not in profile.tags:
        return profile
    run_id = f"load-{uuid.uuid4().hex[:8]}"
    print(f"preparing {profile.tags[PREPARE_TAG]} ({prepared_count(profile)}) …", file=sys.stderr)
    preparation = prepare(
        profile, target, ledger_address or LEDGER_ADDRESS_DEFAULT, run_id, certificates
    )
    (template,) = profile.data
    data = [{**template, **fragment} for fragment in preparation.fragments]
    work_directory.mkdir(parents=True, exist_ok=True)
    path = work_directory / f"{profile.path.stem}-{run_id}.json"
    prepared = profile.with_data(data, path)
    path.write_text(json.dumps(prepared.raw, indent=1), encoding="utf-8")
    return prepared


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="host:port of the service called")
    parser.add_argument(
        "--config", required=True, help="a ghz config: a path, or a name in deploy/ghz"
    )
    parser.add_argument("--output", help="where to write the report (default: var/load/…)")
    parser.add_argument(
        "--ledger",
        default=LEDGER_ADDRESS_DEFAULT,
        help="the ledger, for profiles of other services that need objects made first",
    )
    parser.add_argument(
        "--bundled",
        action="store_true",
        help="use the bundled generator even where ghz is installed",
    )
    parser.add_argument(
        "--certs",
        type=Path,
        help="call with mutual TLS as the local identity the access policy admits, from these "
        "certificates (var/certs, as make run makes them); without it, as the profile says",
    )
    arguments = parser.parse_args(argv)
    profile = prepared_profile(
        LoadProfile.read(profile_path(arguments.config)),
        arguments.target,
        WORK_DIRECTORY,
        arguments.ledger,
        arguments.certs,
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = Path(arguments.output or WORK_DIRECTORY / f"{profile.path.stem}-{stamp}.report.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    ghz = None if arguments.bundled else shutil.which("ghz")
    if ghz is not None:
        report = run_ghz(ghz, profile, arguments.target, output)
    else:
        report = run_bundled(profile, arguments.target)
    output.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(
        json.dumps(
            {key: value for key, value in report.items() if key not in ("options", "histogram")},
            indent=2,
        )
    )
    print(f"report: {output} ({'ghz' if ghz else 'bundled generator'})", file=sys.stderr)
    return 0 if report["count"] > 0 and set(report["statusCodeDistribution"]) <= {"OK"} else 1


def iterate_profiles() -> Iterator[Path]:
    yield from sorted(PROFILES_DIRECTORY.glob("*.json"))


if __name__ == "__main__":
    sys.exit(main())
