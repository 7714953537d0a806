"""A local certificate authority and the certificates the local suite runs with (`make certs`).

`ensure_local_certificates(directory)` makes what is missing under `directory`: the CA
(`ca.pem`, `ca-key.pem`) and, signed by it, one certificate and key per identity of
`LOCAL_IDENTITIES` (`<name>.pem`, `<name>-key.pem`). Each certificate names its identity as a
SAN URI, `spiffe://sesame/<kind>/<name>`, which is what the servers authorise
(`services.common.identity`). The services' certificates also name the addresses they are
reached at locally (localhost, 127.0.0.1) and in the manifests (sesame-<service>), so that
one file serves both ends of a call: the server's side, and the client's when it calls
another service. Keys are ECDSA P-256 and readable by their owner only.

Production takes its certificates from the platform's issuer instead (deploy/README.md); this
module exists so that `make run` is secure with no setup.

    python -m services.common.certificates var/certs
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.common.identity import SPIFFE_PREFIX

CA_CERTIFICATE = "ca.pem"
CA_PRIVATE_KEY = "ca-key.pem"
LOCAL_VALIDITY = datetime.timedelta(days=825)
CA_VALIDITY = datetime.timedelta(days=3650)
SERVICE_NAMES = ("ledger", "score", "waiver")


@dataclass(frozen=True)
class LocalIdentity:
    """One certificate of the local suite: its file name, the identity it names and, for a
    service, the host names it answers to."""

    file_stem: str
    identity: str  # "<kind>/<name>"
    host_names: tuple[str, ...] = ()


def _service_identity(name: str) -> LocalIdentity:
    return LocalIdentity(
        name, f"service/{name}", ("localhost", "127.0.0.1", name, f"sesame-{name}")
    )


LOCAL_IDENTITIES: tuple[LocalIdentity, ...] = (
    *(_service_identity(name) for name in SERVICE_NAMES),
    LocalIdentity("operator", "operator/local"),
    LocalIdentity("merchant-sesame-demo", "merchant/sesame-demo"),
    LocalIdentity("user-u-7", "user/u-7"),
    LocalIdentity("platform", "platform/local"),
)


@dataclass(frozen=True)
class CertificatePaths:
    """The files of one identity: its certificate, its key, and the CA that signed both ends."""

    certificate_file: Path
    private_key_file: Path
    ca_file: Path


def certificate_paths(directory: Path, file_stem: str) -> CertificatePaths:
    return CertificatePaths(
        directory / f"{file_stem}.pem",
        directory / f"{file_stem}-key.pem",
        directory / CA_CERTIFICATE,
    )


def ensure_local_certificates(
    directory: Path, identities: Sequence[LocalIdentity] = LOCAL_IDENTITIES
) -> dict[str, CertificatePaths]:
    """Makes the CA and every identity's certificate that is missing; the paths by file stem."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_certificate, ca_key = _local_authority(directory)
    paths = {}
    for identity in identities:
        paths[identity.file_stem] = certificate_paths(directory, identity.file_stem)
        if not paths[identity.file_stem].certificate_file.exists():
            issue_certificate(directory, identity, ca_certificate, ca_key)
    return paths


def issue_certificate(
    directory: Path,
    identity: LocalIdentity,
    ca_certificate: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    validity: datetime.timedelta = LOCAL_VALIDITY,
) -> CertificatePaths:
    """Writes a certificate for `identity` signed by the CA (replacing any there); its paths.
    The key is written first, the certificate last: a reader that sees a new certificate
    also sees its key (`services.common.tls` checks that they match)."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(SPIFFE_PREFIX + identity.identity)
    ]
    for host_name in identity.host_names:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host_name)))
        except ValueError:
            names.append(x509.DNSName(host_name))
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if identity.host_names:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.identity)]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = certificate_paths(directory, identity.file_stem)
    _write_private_key(paths.private_key_file, key)
    _write_atomically(paths.certificate_file, certificate.public_bytes(serialization.Encoding.PEM))
    return paths


def load_local_authority(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return _local_authority(directory)


def _local_authority(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    certificate_file = directory / CA_CERTIFICATE
    key_file = directory / CA_PRIVATE_KEY
    if certificate_file.exists() and key_file.exists():
        certificate = x509.load_pem_x509_certificate(certificate_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_file} is not an ECDSA key")
        return certificate, key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sesame local CA")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_private_key(key_file, key)
    _write_atomically(certificate_file, certificate.public_bytes(serialization.Encoding.PEM))
    return certificate, key


def _write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomically(path, pem, mode=0o600)


def _write_atomically(path: Path, content: bytes, mode: int = 0o644) -> None:
    # A rename replaces the file at once, so a server reloading it never reads half of one.
    partial = path.with_name(f".{path.name}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as output:
        output.write(content)
    os.chmod(partial, mode)
    partial.replace(path)


def main(arguments: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Make the local CA and the local suite's certificates where missing."
    )
    parser.add_argument("directory", type=Path, help="where to write them (var/certs)")
    parsed = parser.parse_args(arguments)
    paths = ensure_local_certificates(parsed.directory)
    for stem, identity_paths in paths.items():
        print(f"{stem:22} {identity_paths.certificate_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
