"""User ids in logs are pseudonyms: a keyed hash, the same for one user wherever it is logged
with the same key, and no way back to the id without the key.

`pseudonym(user_id)` is `p-` and the first 20 hex digits of HMAC-SHA256(key, user_id). The key
comes from `SESAME_<SERVICE>_PSEUDONYM_KEY_FILE` (`configure_pseudonyms`): give every service
the same file, and one user's calls can be followed across the services' logs; without one, each
process draws a random key, and a user's lines can be followed within that process's life only.
`pseudonymised(text, user_ids)` replaces every user id in a text (a request id derived from the
user, for example) with its pseudonym.

Metrics carry no user id at all: their labels are methods, codes, scenarios and outcomes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

PREFIX = "p-"
DIGITS = 20
_key = secrets.token_bytes(32)


def configure_pseudonyms(key_file: str) -> None:
    """Uses the key in `key_file` from now on; an empty name keeps this process's random key."""
    global _key
    if key_file:
        key = Path(key_file).read_bytes().strip()
        if len(key) < 16:
            raise ValueError("a pseudonym key needs at least 16 bytes")
        _key = key


def pseudonym(user_id: str) -> str:
    return _keyed_pseudonym(_key, user_id)


# Every call of a user's logs the user's pseudonym: each is hashed once per key while in use.
@lru_cache(maxsize=65_536)
def _keyed_pseudonym(key: bytes, user_id: str) -> str:
    digest = hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return PREFIX + digest[:DIGITS]


def pseudonymised(text: str, user_ids: Iterable[str]) -> str:
    """`text` with every non-empty user id in it replaced by its pseudonym, longest first (so
    that "u-1" does not break up "u-12")."""
    for user_id in sorted({user_id for user_id in user_ids if user_id}, key=len, reverse=True):
        text = text.replace(user_id, pseudonym(user_id))
    return text


def user_ids_of(request: object) -> list[str]:
    """The user ids a request names (`user_id`, `user_ids`); none for a stream of requests."""
    found: list[str] = []
    single = getattr(request, "user_id", None)
    if isinstance(single, str) and single:
        found.append(single)
    several = getattr(request, "user_ids", None)
    if several is not None and not isinstance(several, str):
        found.extend(str(user_id) for user_id in several if user_id)
    return found
