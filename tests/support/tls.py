"""Certificates and mutual TLS channels for tests, from a CA made by the suite's own
`services.common.certificates`."""

from __future__ import annotations

from pathlib import Path

import grpc

from services.common.certificates import CA_CERTIFICATE, LOCAL_IDENTITIES, ensure_local_certificates
from services.common.tls import TlsFiles, channel_credentials

# Each test channel its own connection: gRPC would otherwise share one between channels with
# the same target and credentials, and a test of a new handshake would see an old one.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]

# The local identity files by identity ("operator/local" -> "operator").
FILE_STEMS = {identity.identity: identity.file_stem for identity in LOCAL_IDENTITIES}


def make_certificates(directory: Path) -> Path:
    ensure_local_certificates(directory)
    return directory


def tls_files(directory: Path, file_stem: str) -> TlsFiles:
    return TlsFiles(
        directory / f"{file_stem}.pem",
        directory / f"{file_stem}-key.pem",
        directory / CA_CERTIFICATE,
    )


def server_environment(directory: Path, service: str, prefix: str = "SESAME_") -> dict[str, str]:
    """The TLS settings of a server presenting `service`'s certificate."""
    files = tls_files(directory, service)
    return {
        f"{prefix}TLS_CERTIFICATE_FILE": str(files.certificate_file),
        f"{prefix}TLS_PRIVATE_KEY_FILE": str(files.private_key_file),
        f"{prefix}TLS_CA_FILE": str(files.ca_file),
    }


def channel_as(directory: Path, address: str, file_stem: str) -> grpc.Channel:
    """A mutual TLS channel presenting the certificate `file_stem` of `directory`."""
    return grpc.secure_channel(
        address, channel_credentials(tls_files(directory, file_stem)), options=OWN_CONNECTION
    )


def channel_without_certificate(directory: Path, address: str) -> grpc.Channel:
    """TLS that trusts the server but presents no certificate of its own."""
    credentials = grpc.ssl_channel_credentials((directory / CA_CERTIFICATE).read_bytes())
    return grpc.secure_channel(address, credentials, options=OWN_CONNECTION)
