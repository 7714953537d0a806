"""How long a call may still take, passed from the server's call to every outbound call it makes.

A service answering a caller with 800 ms left must not wait 2 s for a dependency: each outbound
call gets the smaller of its own limit and what remains of the caller's deadline, less a margin
to answer in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from services.common.errors import Unavailable

# Left for the service's own work after an outbound call returns.
ANSWER_MARGIN_S = 0.05


@dataclass(frozen=True)
class Deadline:
    """A moment on the monotonic clock; `None` for no deadline (background work)."""

    expires_at_s: float | None

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        return cls(None if seconds is None else time.monotonic() + seconds)

    @classmethod
    def none(cls) -> Deadline:
        return cls(None)

    def timeout_s(self, limit_s: float, *, reason: str) -> float:
        """The timeout of one outbound call: `limit_s`, or less when the caller's deadline is
        nearer; `Unavailable` with `reason` when the caller's time is already up."""
        if self.expires_at_s is None:
            return limit_s
        remaining_s = self.expires_at_s - time.monotonic() - ANSWER_MARGIN_S
        if remaining_s <= 0:
            raise Unavailable(
                "the call's deadline leaves no time to ask a dependency", reason=reason
            )
        return min(limit_s, remaining_s)
