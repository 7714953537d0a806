"""Opaque page tokens for ListEntries: where the previous page ended, and for which filter."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from services.common.validation import Violations
from services.ledger.domain import reasons
from services.ledger.domain.canonical import (
    NotCanonicalError,
    canonical_bytes,
    parse_canonical_json,
)
from services.ledger.domain.codec import DecodeError, from_plain, to_plain

_TOKEN_LENGTH_MAX = 1024
# Sequences are int64 in the contract and in both databases; a token naming a larger one was
# not issued here, and the database could not even compare it.
_SEQUENCE_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class EntryPageToken:
    # The user filter the token was issued for ("" for every user); a token only continues the
    # listing it came from.
    user_id: str
    after_global_sequence: int
    after_user_sequence: int


def encode_page_token(token: EntryPageToken) -> str:
    return base64.urlsafe_b64encode(canonical_bytes(to_plain(token))).decode("ascii")


def decode_page_token(text: str, user_id: str, violations: Violations) -> EntryPageToken | None:
    """The token a previous page returned; None, with its problem added to `violations`
    (PAGE_TOKEN_INVALID on `page_token`), when it is not one."""
    try:
        if len(text) > _TOKEN_LENGTH_MAX:
            raise ValueError("too long")
        plain = parse_canonical_json(base64.urlsafe_b64decode(text.encode("ascii")).decode("ascii"))
        token = from_plain(EntryPageToken, plain)
    except (ValueError, UnicodeError, binascii.Error, NotCanonicalError, DecodeError):
        _invalid(violations, "is not a token this service issued")
        return None
    if token.user_id != user_id:
        _invalid(violations, "was issued for a different user_id filter")
        return None
    sequences = (token.after_global_sequence, token.after_user_sequence)
    if not all(0 <= sequence <= _SEQUENCE_MAX for sequence in sequences):
        _invalid(violations, "is not a token this service issued")
        return None
    return token


def _invalid(violations: Violations, description: str) -> None:
    violations.add("page_token", reasons.PAGE_TOKEN_INVALID, description)
