"""Who may call what, through real mutual TLS connections, on both server runtimes.

The server is the common runtime's (`create_server`, `create_aio_server`) with its TLS and
access check; behind them stand the three services' contracts with every method answering
an empty response, so what is tested is the admission alone: every row of the access policy
(services/common/access_policy.toml) admits its callers and refuses the others, and every
path of refusal answers its code. The services' own behaviour behind the check is tested
with the suite `make run` starts (tests/e2e/test_suite_runs_like_make_run.py)."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import descriptor, message_factory
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status
from sesame.ledger.v1 import ledger_service_pb2
from sesame.score.v1 import score_service_pb2
from sesame.waiver.v1 import waiver_service_pb2

from services.common.access import ANY_CALLER, AccessPolicy, CallerRule
from services.common.aio_server import create_aio_server
from services.common.certificates import (
    LocalIdentity,
    issue_certificate,
    load_local_authority,
)
from services.common.runtime import ServiceRegistration
from services.common.server import create_server
from services.common.settings import ServerSettings, load_settings
from tests.support.aio import AioServerThread
from tests.support.tls import (
    channel_as,
    channel_without_certificate,
    make_certificates,
    server_environment,
)

CONTRACTS = (
    ledger_service_pb2.DESCRIPTOR.services_by_name["LedgerService"],
    score_service_pb2.DESCRIPTOR.services_by_name["ScoreService"],
    waiver_service_pb2.DESCRIPTOR.services_by_name["WaiverService"],
)
POLICY = AccessPolicy.load()
# Identities of the local certificates, and the file each is in.
CALLERS = {
    "service/ledger": "ledger",
    "service/score": "score",
    "service/waiver": "waiver",
    "operator/local": "operator",
    "merchant/sesame-demo": "merchant-sesame-demo",
    "user/u-7": "user-u-7",
}
TIMEOUT_S = 10


def _methods() -> dict[str, descriptor.MethodDescriptor]:
    """Every method of the contracts, and health's Check (which the server itself serves)."""
    methods = {
        f"{service.full_name}/{method.name}": method
        for service in CONTRACTS
        for method in service.methods
    }
    health = health_pb2.DESCRIPTOR.services_by_name["Health"]
    methods[f"{health.full_name}/Check"] = health.methods_by_name["Check"]
    return methods


METHODS = _methods()


# ----------------------------------------------------------------------------------------------
# The server: every method of the three contracts, answering an empty response


def _registration(service: descriptor.ServiceDescriptor, asynchronous: bool) -> ServiceRegistration:
    handlers = {}
    for method in service.methods:
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        handlers[method.name] = _handler(method, request_class, response_class, asynchronous)
    generic = grpc.method_handlers_generic_handler(service.full_name, handlers)
    return ServiceRegistration(
        service.full_name, lambda server: server.add_generic_rpc_handlers((generic,))
    )


def _handler(
    method: descriptor.MethodDescriptor,
    request_class: type[Message],
    response_class: type[Message],
    asynchronous: bool,
) -> grpc.RpcMethodHandler[Any, Any]:
    serializers = {
        "request_deserializer": request_class.FromString,
        "response_serializer": response_class.SerializeToString,
    }
    streams = (method.client_streaming, method.server_streaming)
    if asynchronous:

        async def answer(request: Any, context: Any) -> Any:
            return response_class()

        async def answer_stream(request: Any, context: Any) -> Any:
            yield response_class()

    else:

        def answer(request: Any, context: Any) -> Any:
            return response_class()

        def answer_stream(request: Any, context: Any) -> Any:
            yield response_class()

    kinds: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler[Any, Any]]] = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    behavior = answer_stream if method.server_streaming else answer
    return kinds[streams](behavior, **serializers)


@dataclass
class TlsServer:
    address: str
    certificates: Path


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = make_certificates(tmp_path_factory.mktemp("certs"))
    ca_certificate, ca_key = load_local_authority(directory)
    # A certificate the CA signed that names no Sesame identity.
    issue_certificate(directory, LocalIdentity("nobody", "nobody"), ca_certificate, ca_key)
    return directory


def _signing_key(directory: Path) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    (directory / "tokens.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def token_key(certificates: Path) -> bytes:
    return _signing_key(certificates)


def _settings(certificates: Path, **extra: str) -> ServerSettings:
    environment = {
        "SESAME_PORT": "0",
        **server_environment(certificates, "ledger"),
        "SESAME_TOKEN_PUBLIC_KEY_FILE": str(certificates / "tokens.pub"),
        **extra,
    }
    return load_settings(ServerSettings, environment)


@contextmanager
def _start_sync(settings: ServerSettings) -> Iterator[int]:
    created = create_server(settings, [_registration(s, False) for s in CONTRACTS])
    created.server.start()
    try:
        yield created.port
    finally:
        created.server.stop(None)


@contextmanager
def _start_asyncio(settings: ServerSettings) -> Iterator[int]:
    server_thread = AioServerThread()
    created = server_thread.run(
        create_aio_server(settings, [_registration(s, True) for s in CONTRACTS])
    )
    server_thread.run(created.server.start())
    try:
        yield created.port
    finally:
        server_thread.run(created.server.stop(None))
        server_thread.close()


RUNTIMES = {"sync": _start_sync, "asyncio": _start_asyncio}


@pytest.fixture(scope="module", params=sorted(RUNTIMES))
def server(
    request: pytest.FixtureRequest, certificates: Path, token_key: bytes
) -> Iterator[TlsServer]:
    with RUNTIMES[request.param](_settings(certificates)) as port:
        yield TlsServer(f"127.0.0.1:{port}", certificates)


# ----------------------------------------------------------------------------------------------
# Calls


def call(
    server: TlsServer,
    method: str,
    caller_file: str,
    request: Message | None = None,
    metadata: tuple[tuple[str, str], ...] = (),
) -> grpc.StatusCode:
    """The status of one call of `method` presenting `caller_file`'s certificate."""
    with channel_as(server.certificates, server.address, caller_file) as channel:
        return _status_of(channel, method, request, metadata)


def _status_of(
    channel: grpc.Channel,
    method: str,
    request: Message | None,
    metadata: tuple[tuple[str, str], ...] = (),
) -> grpc.StatusCode:
    contract = METHODS[method]
    request_class = message_factory.GetMessageClass(contract.input_type)
    response_class = message_factory.GetMessageClass(contract.output_type)
    request = request if request is not None else request_class()
    path = f"/{method}"
    options: dict[str, Any] = {
        "request_serializer": request_class.SerializeToString,
        "response_deserializer": response_class.FromString,
    }
    try:
        if contract.client_streaming and contract.server_streaming:
            list(
                channel.stream_stream(path, **options)(
                    iter([request]), timeout=TIMEOUT_S, metadata=metadata
                )
            )
        elif contract.client_streaming:
            channel.stream_unary(path, **options)(
                iter([request]), timeout=TIMEOUT_S, metadata=metadata
            )
        elif contract.server_streaming:
            list(
                channel.unary_stream(path, **options)(request, timeout=TIMEOUT_S, metadata=metadata)
            )
        else:
            channel.unary_unary(path, **options)(request, timeout=TIMEOUT_S, metadata=metadata)
    except grpc.RpcError as error:
        assert isinstance(error, grpc.Call)
        return error.code()
    return grpc.StatusCode.OK


def request_owned_by(method: str, rule: CallerRule, name: str) -> Message:
    """A request of `method` whose field the rule reads names `name`."""
    request = message_factory.GetMessageClass(METHODS[method].input_type)()
    if rule.field_path:
        *parents, last = rule.field_path
        target: Any = request
        for parent in parents:
            target = getattr(target, parent)
        field = target.DESCRIPTOR.fields_by_name[last]
        if field.is_repeated:
            getattr(target, last).append(name)
        else:
            setattr(target, last, name)
    return request


def admitted_caller(rule: CallerRule) -> str:
    """A local identity the rule admits."""
    if rule.kind == ANY_CALLER:
        return "operator/local"
    if rule.name is not None:
        return f"{rule.kind}/{rule.name}"
    (identity,) = [identity for identity in CALLERS if identity.startswith(rule.kind + "/")][:1]
    return identity


ROWS = [
    (method, rule)
    for method, rules in POLICY.methods.items()
    if method in METHODS
    for rule in rules
]


# ----------------------------------------------------------------------------------------------
# The policy, row by row


def test_every_method_of_every_contract_has_a_row() -> None:
    contract_methods = {f"{s.full_name}/{m.name}" for s in CONTRACTS for m in s.methods}
    assert contract_methods <= set(POLICY.methods)
    for name in ("grpc.health.v1.Health/Check", "grpc.health.v1.Health/Watch"):
        assert name in POLICY.methods


@pytest.mark.parametrize(("method", "rule"), ROWS, ids=[f"{m.split('/')[1]}:{r}" for m, r in ROWS])
def test_each_row_admits_its_caller(server: TlsServer, method: str, rule: CallerRule) -> None:
    caller = admitted_caller(rule)
    request = request_owned_by(method, rule, caller.split("/", 1)[1])
    assert call(server, method, CALLERS[caller], request) == grpc.StatusCode.OK


@pytest.mark.parametrize("method", sorted(m for m in POLICY.methods if m in METHODS))
def test_each_row_refuses_every_other_caller(server: TlsServer, method: str) -> None:
    rules = POLICY.methods[method]
    for caller, file_stem in CALLERS.items():
        kind, name = caller.split("/", 1)
        # The caller's own request, wherever a rule reads a field: refused for its kind alone.
        requests = [request_owned_by(method, rule, name) for rule in rules] or [None]
        admitted = any(
            rule.kind in (ANY_CALLER, kind) and rule.name in (None, name) for rule in rules
        )
        if admitted:
            continue
        for request in requests:
            assert call(server, method, file_stem, request) == grpc.StatusCode.PERMISSION_DENIED, (
                caller
            )


OWNED_ROWS = [(method, rule) for method, rule in ROWS if rule.field_path]


@pytest.mark.parametrize(
    ("method", "rule"), OWNED_ROWS, ids=[f"{m.split('/')[1]}:{r}" for m, r in OWNED_ROWS]
)
def test_a_merchant_or_user_is_refused_what_is_not_their_own(
    server: TlsServer, method: str, rule: CallerRule
) -> None:
    caller = admitted_caller(rule)
    someone_else = request_owned_by(method, rule, "someone-else")
    assert call(server, method, CALLERS[caller], someone_else) == grpc.StatusCode.PERMISSION_DENIED
    empty = request_owned_by(method, rule, "")
    assert call(server, method, CALLERS[caller], empty) == grpc.StatusCode.PERMISSION_DENIED


def test_a_user_records_their_own_consent_and_an_operator_may_record_it_for_them(
    server: TlsServer,
) -> None:
    method = "sesame.ledger.v1.LedgerService/RecordConsent"
    own = ledger_service_pb2.RecordConsentRequest(
        request_id="consent-1", user_id="u-7", state=ledger_service_pb2.CONSENT_STATE_WITHDRAWN
    )
    someone_elses = ledger_service_pb2.RecordConsentRequest(
        request_id="consent-2", user_id="u-8", state=ledger_service_pb2.CONSENT_STATE_GRANTED
    )

    assert call(server, method, "user-u-7", own) == grpc.StatusCode.OK
    assert call(server, method, "user-u-7", someone_elses) == grpc.StatusCode.PERMISSION_DENIED
    assert call(server, method, "operator", someone_elses) == grpc.StatusCode.OK
    for caller_file in ("ledger", "score", "waiver", "merchant-sesame-demo"):
        assert call(server, method, caller_file, own) == grpc.StatusCode.PERMISSION_DENIED


def test_a_statement_on_a_record_is_attached_by_its_user_alone(server: TlsServer) -> None:
    method = "sesame.ledger.v1.LedgerService/AttachStatement"
    own = ledger_service_pb2.AttachStatementRequest(
        request_id="statement-1", user_id="u-7", obligation_id="o-1", text="My words."
    )
    someone_elses = ledger_service_pb2.AttachStatementRequest(
        request_id="statement-2", user_id="u-8", obligation_id="o-2", text="Not my words."
    )

    assert call(server, method, "user-u-7", own) == grpc.StatusCode.OK
    assert call(server, method, "user-u-7", someone_elses) == grpc.StatusCode.PERMISSION_DENIED
    # Nobody speaks for the user: not an operator, not a service, not a merchant.
    for caller_file in ("operator", "ledger", "score", "waiver", "merchant-sesame-demo"):
        assert call(server, method, caller_file, own) == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_health_and_reflection_answer_any_caller_with_an_identity(
    server: TlsServer, caller: str
) -> None:
    with channel_as(server.certificates, server.address, CALLERS[caller]) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
        listed = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert "sesame.waiver.v1.WaiverService" in listed


# ----------------------------------------------------------------------------------------------
# Refusals before the policy: transport and identity

GET_ORDER = "sesame.waiver.v1.WaiverService/GetOrder"
OWN_ORDER = waiver_service_pb2.GetOrderRequest(merchant_id="sesame-demo", out_order_no="o-1")


def test_a_plaintext_call_is_refused(server: TlsServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        assert _status_of(channel, GET_ORDER, OWN_ORDER) == grpc.StatusCode.UNAVAILABLE
        health = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            health.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_call_without_a_client_certificate_is_refused(server: TlsServer) -> None:
    with channel_without_certificate(server.certificates, server.address) as channel:
        assert _status_of(channel, GET_ORDER, OWN_ORDER) == grpc.StatusCode.UNAVAILABLE


def test_a_certificate_of_another_authority_is_refused(server: TlsServer, tmp_path: Path) -> None:
    stranger = make_certificates(tmp_path / "stranger")
    # Trusts the server's CA, presents a certificate another CA signed.
    (stranger / "ca.pem").write_bytes((server.certificates / "ca.pem").read_bytes())
    with channel_as(stranger, server.address, "merchant-sesame-demo") as channel:
        assert _status_of(channel, GET_ORDER, OWN_ORDER) == grpc.StatusCode.UNAVAILABLE


def test_a_certificate_naming_no_identity_is_unauthenticated(server: TlsServer) -> None:
    assert call(server, GET_ORDER, "nobody", OWN_ORDER) == grpc.StatusCode.UNAUTHENTICATED
    assert call(server, "grpc.health.v1.Health/Check", "nobody") == grpc.StatusCode.UNAUTHENTICATED


def _token(key: bytes, subject: str, expires_in: datetime.timedelta) -> str:
    now = datetime.datetime.now(datetime.UTC)
    claims = {"sub": subject, "iss": "sesame", "aud": "sesame", "exp": now + expires_in}
    return jwt.encode(claims, key, algorithm="ES256")


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def test_a_platform_acts_for_the_merchant_its_token_names(
    server: TlsServer, token_key: bytes
) -> None:
    token = _token(token_key, "merchant/sesame-demo", datetime.timedelta(minutes=5))
    assert call(server, GET_ORDER, "platform", OWN_ORDER, _bearer(token)) == grpc.StatusCode.OK
    others = waiver_service_pb2.GetOrderRequest(merchant_id="another", out_order_no="o-1")
    assert (
        call(server, GET_ORDER, "platform", others, _bearer(token))
        == grpc.StatusCode.PERMISSION_DENIED
    )


def test_a_platform_without_a_valid_token_is_unauthenticated(
    server: TlsServer, token_key: bytes, tmp_path: Path
) -> None:
    expired = _token(token_key, "merchant/sesame-demo", -datetime.timedelta(minutes=1))
    forged = _token(_signing_key(tmp_path), "merchant/sesame-demo", datetime.timedelta(minutes=5))
    service = _token(token_key, "service/waiver", datetime.timedelta(minutes=5))
    for metadata in ((), _bearer(expired), _bearer(forged), _bearer(service), _bearer("x.y.z")):
        assert (
            call(server, GET_ORDER, "platform", OWN_ORDER, metadata)
            == grpc.StatusCode.UNAUTHENTICATED
        ), metadata


# ----------------------------------------------------------------------------------------------
# Rate limits, and certificate rotation


def test_a_caller_over_its_rate_limit_is_told_when_to_retry(
    certificates: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[methods]\n"sesame.waiver.v1.WaiverService/GetOrder" = '
        '["merchant/{merchant_id}", "operator/*"]\n'
        "[rate_limits]\nmerchant = { per_second = 0.5, burst = 2 }\n"
    )
    settings = _settings(certificates, SESAME_ACCESS_POLICY_FILE=str(policy))
    with _start_sync(settings) as port:
        with channel_as(certificates, f"127.0.0.1:{port}", "merchant-sesame-demo") as channel:
            get_order = channel.unary_unary(
                f"/{GET_ORDER}",
                request_serializer=waiver_service_pb2.GetOrderRequest.SerializeToString,
                response_deserializer=waiver_service_pb2.Order.FromString,
            )
            get_order(OWN_ORDER, timeout=TIMEOUT_S)
            get_order(OWN_ORDER, timeout=TIMEOUT_S)
            with pytest.raises(grpc.RpcError) as raised:
                get_order(OWN_ORDER, timeout=TIMEOUT_S)
        # Another caller has a bucket of its own (and operators no limit in this policy).
        assert call(TlsServer(f"127.0.0.1:{port}", certificates), GET_ORDER, "operator") == (
            grpc.StatusCode.OK
        )
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(raised.value)
    assert status is not None
    retry_info = error_details_pb2.RetryInfo()
    assert any(detail.Unpack(retry_info) for detail in status.details)
    delay_s = retry_info.retry_delay.seconds + retry_info.retry_delay.nanos / 1e9
    assert 0 < delay_s <= 2.0


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_a_rotated_certificate_is_served_without_a_restart(
    certificates: Path, tmp_path: Path, runtime: str
) -> None:
    server_directory = make_certificates(tmp_path / "server")
    renewed = make_certificates(tmp_path / "renewed")  # another CA: tells the two apart
    settings = load_settings(
        ServerSettings, {"SESAME_PORT": "0", **server_environment(server_directory, "ledger")}
    )
    with RUNTIMES[runtime](settings) as port:
        address = f"127.0.0.1:{port}"
        server = TlsServer(address, server_directory)
        assert call(server, "grpc.health.v1.Health/Check", "operator") == grpc.StatusCode.OK
        # A client that trusts only the renewed CA cannot connect yet.
        (renewed / "operator.pem").write_bytes((server_directory / "operator.pem").read_bytes())
        (renewed / "operator-key.pem").write_bytes(
            (server_directory / "operator-key.pem").read_bytes()
        )
        renewed_client = TlsServer(address, renewed)
        check = "grpc.health.v1.Health/Check"
        assert call(renewed_client, check, "operator") == grpc.StatusCode.UNAVAILABLE

        # The files are replaced in place: the renewed certificate, clients still of the old CA.
        (server_directory / "ledger-key.pem").write_bytes((renewed / "ledger-key.pem").read_bytes())
        (server_directory / "ledger.pem").write_bytes((renewed / "ledger.pem").read_bytes())

        assert call(renewed_client, check, "operator") == grpc.StatusCode.OK
        assert call(server, check, "operator") == grpc.StatusCode.UNAVAILABLE
