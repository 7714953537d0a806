"""Mutual TLS for the servers and for the channels between services.

A server with TLS settings (`SESAME_<SERVICE>_TLS_CERTIFICATE_FILE`, `_TLS_PRIVATE_KEY_FILE`,
`_TLS_CA_FILE`) accepts only connections whose client presents a certificate the CA signed;
anything else fails the handshake. Without them a service runs in plaintext only when
`SESAME_<SERVICE>_PLAINTEXT=true` asks for it (and says so when it starts); a service with
neither refuses to start (`require_transport_security`).

Rotation without a restart: the server asks `ReloadingCertificates` before each new
connection's handshake, and it reads the three files again whenever one of them changed (its
modification time or size). A certificate that does not match its key, or a file that cannot be
read, is logged and the previous ones stay in use. Connections already open keep the
certificates they were made with. A channel to another service follows its files the same way
(`services.common.channels.ReloadingChannel`): the calls after a renewal present the new
certificate.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization

log: structlog.typing.FilteringBoundLogger = structlog.get_logger()


@dataclass(frozen=True)
class TlsFiles:
    """One end's certificate chain and key, and the CA it trusts for the other end."""

    certificate_file: Path
    private_key_file: Path
    ca_file: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(certificate chain, private key, CA), checked to belong together."""
        certificate = self.certificate_file.read_bytes()
        private_key = self.private_key_file.read_bytes()
        ca = self.ca_file.read_bytes()
        _require_matching_key(certificate, private_key)
        x509.load_pem_x509_certificates(ca)
        return certificate, private_key, ca

    def stamp(self) -> tuple[tuple[int, int], ...]:
        """What tells that a file changed: each one's modification time and size."""
        stamps = []
        for path in (self.certificate_file, self.private_key_file, self.ca_file):
            status = os.stat(path)
            stamps.append((status.st_mtime_ns, status.st_size))
        return tuple(stamps)


def _require_matching_key(certificate_pem: bytes, private_key_pem: bytes) -> None:
    certificate = x509.load_pem_x509_certificates(certificate_pem)[0]
    private_key = serialization.load_pem_private_key(private_key_pem, password=None)
    public = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    if certificate.public_key().public_bytes(*public) != private_key.public_key().public_bytes(
        *public
    ):
        raise ValueError("the certificate does not match the private key")


class ReloadingCertificates:
    """gRPC's certificate configuration fetcher: a new configuration when the files changed,
    None (keep the current one) otherwise."""

    def __init__(self, files: TlsFiles) -> None:
        self._files = files
        self._lock = threading.Lock()
        self._stamp = files.stamp()
        self.initial = self._configuration(files.read())

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            try:
                stamp = self._files.stamp()
                if stamp == self._stamp:
                    return None
                configuration = self._configuration(self._files.read())
            except (OSError, ValueError) as error:
                log.warning("tls_certificates_not_reloaded", error_type=type(error).__name__)
                return None
            self._stamp = stamp
            log.info(
                "tls_certificates_reloaded", certificate_file=str(self._files.certificate_file)
            )
            return configuration

    @staticmethod
    def _configuration(read: tuple[bytes, bytes, bytes]) -> grpc.ServerCertificateConfiguration:
        certificate, private_key, ca = read
        return grpc.ssl_server_certificate_configuration([(private_key, certificate)], ca)


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Mutual TLS: the client must present a certificate the CA signed; reloaded on change."""
    reloading = ReloadingCertificates(files)
    # gRPC takes None from the fetcher as "no change"; the type stubs leave that out.
    fetcher = cast(Callable[[], grpc.ServerCertificateConfiguration], reloading)
    return grpc.dynamic_ssl_server_credentials(
        reloading.initial, fetcher, require_client_authentication=True
    )


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """A client's side of mutual TLS: trusts the CA, presents its own certificate."""
    certificate, private_key, ca = files.read()
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=private_key, certificate_chain=certificate
    )
