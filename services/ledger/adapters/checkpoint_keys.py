"""The checkpoint key: Ed25519 (the `cryptography` package), in PEM files.

The private key signs checkpoints (`SESAME_LEDGER_CHECKPOINT_KEY_FILE`, PKCS#8, readable by the
ledger alone); its public half verifies them, in the ledger and wherever an operator or a
partner keeps it (`sesame-ledger-admin new-checkpoint-key` writes both). A key is named by its
id: the first 16 hex digits of SHA-256 over the raw public key, which every checkpoint carries.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.ledger.domain.checkpoints import KEY_ID_HEX_LENGTH

# The private key's file is created readable and writable by its owner only.
_PRIVATE_KEY_MODE = 0o600


class CheckpointKeyError(ValueError):
    """A key file that is missing, unreadable or not an Ed25519 key."""


class CheckpointPublicKey:
    """Verifies checkpoint signatures."""

    def __init__(self, public_key: Ed25519PublicKey) -> None:
        self._public_key = public_key
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = hashlib.sha256(raw).hexdigest()[:KEY_ID_HEX_LENGTH]

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self._public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def pem(self) -> bytes:
        return self._public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class CheckpointSigningKey(CheckpointPublicKey):
    """Signs checkpoints, and verifies them with its public half."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        super().__init__(private_key.public_key())
        self._private_key = private_key

    def sign(self, message: bytes) -> bytes:
        return self._private_key.sign(message)


def load_signing_key(path: str | Path) -> CheckpointSigningKey:
    private_key = serialization.load_pem_private_key(_read(path), password=None)
    if not isinstance(private_key, Ed25519PrivateKey):
        raise CheckpointKeyError(f"{path}: not an Ed25519 private key")
    return CheckpointSigningKey(private_key)


def load_public_key(path: str | Path) -> CheckpointPublicKey:
    public_key = serialization.load_pem_public_key(_read(path))
    if not isinstance(public_key, Ed25519PublicKey):
        raise CheckpointKeyError(f"{path}: not an Ed25519 public key")
    return CheckpointPublicKey(public_key)


def create_signing_key(path: str | Path, public_key_path: str | Path) -> CheckpointSigningKey:
    """Writes a new key pair; refuses to overwrite a private key that exists (losing it would
    orphan every checkpoint it signed)."""
    private_key = Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_KEY_MODE)
    with os.fdopen(descriptor, "wb") as key_file:
        key_file.write(pem)
    key = CheckpointSigningKey(private_key)
    Path(public_key_path).parent.mkdir(parents=True, exist_ok=True)
    Path(public_key_path).write_bytes(key.pem())
    return key


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise CheckpointKeyError(f"{path}: {error.strerror}") from error
