"""Who is calling: the identity in a caller's client certificate, or in a signed token.

An identity is `<kind>/<name>`: `service/waiver`, `merchant/sesame-demo`, `user/u-7`,
`operator/alice`, `platform/checkout`. A certificate names it as a SAN URI
(`spiffe://sesame/<kind>/<name>`) or, without one, as its subject's common name
(`<kind>/<name>`). A platform (a merchant's or a partner's own service acting for its
people) presents its certificate and, in the `authorization` metadata, a bearer token that
Sesame signed (a JWT, verified with PyJWT against the configured public key): the token's
subject is then the caller. A certificate or token that names nothing of this form names no
one, and the call is UNAUTHENTICATED.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.x509.oid import NameOID

SPIFFE_PREFIX = "spiffe://sesame/"
KINDS = ("service", "merchant", "user", "operator", "platform")
_IDENTITY_PATTERN = re.compile(r"(?P<kind>[a-z]+)/(?P<name>[A-Za-z0-9][A-Za-z0-9._:@-]{0,127})")
TOKEN_ISSUER = "sesame"
TOKEN_AUDIENCE = "sesame"
TOKEN_ALGORITHMS = ("ES256", "EdDSA", "RS256")
AUTHORIZATION_METADATA = "authorization"
BEARER_PREFIX = "Bearer "


@dataclass(frozen=True)
class Identity:
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


class Unauthenticated(Exception):
    """No identity could be established; the message says what was missing, not a secret."""


def parse_identity(text: str) -> Identity | None:
    """`<kind>/<name>` of a known kind, or None."""
    match = _IDENTITY_PATTERN.fullmatch(text)
    if match is None or match["kind"] not in KINDS:
        return None
    return Identity(match["kind"], match["name"])


@functools.lru_cache(maxsize=1024)
def certificate_identity(certificate_pem: bytes) -> Identity | None:
    """The identity a client certificate names: its first spiffe://sesame/ SAN URI, else its
    common name. Certificates repeat from call to call, so the answers are cached."""
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    try:
        alternative_names = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        for uri in alternative_names.get_values_for_type(x509.UniformResourceIdentifier):
            if uri.startswith(SPIFFE_PREFIX):
                return parse_identity(uri.removeprefix(SPIFFE_PREFIX))
    except x509.ExtensionNotFound:
        pass
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        if isinstance(attribute.value, str):
            return parse_identity(attribute.value)
    return None


class TokenVerifier:
    """Verifies the bearer tokens platforms present: signature, issuer, audience, expiry."""

    def __init__(self, public_key_pem: bytes) -> None:
        self._public_key_pem = public_key_pem

    @classmethod
    def from_file(cls, path: str) -> TokenVerifier | None:
        return cls(Path(path).read_bytes()) if path else None

    def identity(self, token: str) -> Identity:
        try:
            claims = jwt.decode(
                token,
                self._public_key_pem,
                algorithms=list(TOKEN_ALGORITHMS),
                audience=TOKEN_AUDIENCE,
                issuer=TOKEN_ISSUER,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError as error:
            raise Unauthenticated(
                f"the bearer token is not valid: {type(error).__name__}"
            ) from None
        identity = parse_identity(str(claims["sub"]))
        if identity is None or identity.kind in ("service", "platform"):
            raise Unauthenticated("the bearer token's subject names no merchant, user or operator")
        return identity


def caller_identity(
    auth_context: Mapping[str, Any],
    metadata: Iterable[tuple[str, str | bytes]] | None,
    tokens: TokenVerifier | None,
) -> Identity:
    """The caller of one call, from the TLS peer (`auth_context`: each property's values, a
    list of bytes, which the runtimes' type stubs describe differently) and its metadata."""
    certificates = list(auth_context.get("x509_pem_cert") or ())
    if not certificates:
        raise Unauthenticated("the call carries no client certificate")
    identity = certificate_identity(bytes(certificates[0]))
    if identity is None:
        raise Unauthenticated("the client certificate names no Sesame identity")
    if identity.kind != "platform":
        return identity
    token = _bearer_token(metadata)
    if token is None:
        raise Unauthenticated("a platform call carries a bearer token naming whom it acts for")
    if tokens is None:
        raise Unauthenticated("this server accepts no bearer tokens")
    return tokens.identity(token)


def _bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if (
            key == AUTHORIZATION_METADATA
            and isinstance(value, str)
            and value.startswith(BEARER_PREFIX)
        ):
            return value.removeprefix(BEARER_PREFIX).strip()
    return None
