"""Server-assigned identifiers of holds and obligations."""

from __future__ import annotations

import uuid
from typing import Protocol


class IdGenerator(Protocol):
    def new_hold_id(self) -> str: ...

    def new_obligation_id(self) -> str: ...


class RandomIds:
    """Unguessable ids, so a caller can never address another caller's hold by counting."""

    def new_hold_id(self) -> str:
        return f"hold_{uuid.uuid4().hex}"

    def new_obligation_id(self) -> str:
        return f"obligation_{uuid.uuid4().hex}"
