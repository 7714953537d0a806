"""Canonical JSON and the per-user hash chain.

Canonical JSON: keys sorted, no spaces, ASCII only (other characters escaped), integers and never
floats. Two different plain values always encode to different bytes, and one value always to the
same bytes, which is what makes a hash over it meaningful.

The chain: `hash_n = sha256(bytes.fromhex(hash_{n-1}) + canonical(entry_n))`, starting from 64
zeros. The canonical entry carries a schema version so that a future change of the entry's shape
can never be mistaken for the old one.
"""

from __future__ import annotations

import hashlib
import json

from services.ledger.domain.codec import Plain

ENTRY_SCHEMA_VERSION = 1
REQUEST_SCHEMA_VERSION = 1


class NotCanonicalError(ValueError):
    """A value that canonical JSON cannot hold (a float, a non-string key, ...)."""


def canonical_json(value: Plain) -> str:
    """Canonical JSON of a value from anywhere; refuses what canonical JSON cannot hold."""
    _require_plain(value)
    return plain_canonical_json(value)


def plain_canonical_json(value: Plain) -> str:
    """Canonical JSON of a value known to be plain: one made by `codec.to_plain`, which refuses
    anything else, or read by `parse_canonical_json`. Skips the walk that checks it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical_bytes(value: Plain) -> bytes:
    return canonical_json(value).encode("ascii")


def parse_canonical_json(text: str) -> Plain:
    """Parses `text` and checks that it is exactly the canonical encoding of what it holds."""
    try:
        value: Plain = json.loads(text)
    except json.JSONDecodeError as error:
        raise NotCanonicalError(f"not JSON: {error.msg}") from None
    if canonical_json(value) != text:
        raise NotCanonicalError("JSON is not in canonical form")
    return value


def canonical_entry(
    *,
    user_id: str,
    user_sequence: int,
    entry_type: str,
    payload_json: str,
    request_id: str,
    request_hash: str,
    recorded_at_us: int,
) -> bytes:
    """The bytes an entry's hash covers: the canonical JSON of the entry, its payload given as
    the payload's canonical JSON text, exactly as stored.

    The global sequence is left out on purpose: it is allocated after the hash, at commit, so
    that users' chains never wait on each other. The payload text is spliced in rather than
    encoded again ("payload" sorts first among the keys), which makes the hash cover the stored
    bytes themselves: any change to them, even one that parses to the same value, breaks it.
    """
    others = plain_canonical_json(
        {
            "schema_version": ENTRY_SCHEMA_VERSION,
            "user_id": user_id,
            "user_sequence": user_sequence,
            "type": entry_type,
            "request_id": request_id,
            "request_hash": request_hash,
            "recorded_at_us": recorded_at_us,
        }
    )
    return ('{"payload":' + payload_json + "," + others[1:]).encode("utf-8")


def chain_hash(previous_hash: str, canonical_entry_bytes: bytes) -> str:
    """The next link of a chain: sha256 over the previous hash's bytes and the entry."""
    return hashlib.sha256(bytes.fromhex(previous_hash) + canonical_entry_bytes).hexdigest()


def request_hash(method: str, command: Plain) -> str:
    """What identifies a request's content, so a reused request id can be told apart.
    `command` must be plain (see `plain_canonical_json`)."""
    canonical_request = plain_canonical_json(
        {"schema_version": REQUEST_SCHEMA_VERSION, "method": method, "command": command}
    )
    return hashlib.sha256(canonical_request.encode("ascii")).hexdigest()


def _require_plain(value: Plain) -> None:
    # An explicit stack bounds the walk by the value's size, not by Python's recursion limit.
    pending: list[object] = [value]
    while pending:
        item = pending.pop()
        if item is None or isinstance(item, bool | int | str):
            continue
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            for key, nested in item.items():
                if not isinstance(key, str):
                    raise NotCanonicalError(f"object key {key!r} is not a string")
                pending.append(nested)
        else:
            raise NotCanonicalError(f"{type(item).__name__} has no canonical JSON form")
