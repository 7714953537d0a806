"""A per-user cache of what was derived from users' credit histories in the ledger (the score
service's features and scores, the waiver's scores), bounded in size and in age.

Keyed by (user_id, as_of): the same user read as of different times has different histories.
Entries are dropped when the ledger's entry stream reports a new entry of the user's credit
history (see `services.common.history_watch`), when they are older than `max_age_s` (counted from
when the history was read), or when the cache is full (least recently used first).

Memory. The cache holds at most `max_entries` users, which each service chooses for its caches to
fit in the memory the manifests give its pods (the README gives the size of an entry). Entries
past their age are dropped from the least recently used end as new ones are stored, so a cache
holds little more than the users read within `max_age_s`, not every user it ever read. The
newest sequence remembered per user (below) is bounded the same way, by `SEEN_USERS_MAX`.

Staleness window. A score may miss a ledger entry for as long as the entry takes to arrive on the
stream (normally milliseconds); if the stream is down, for at most `max_age_s`, because no entry
is served past that age whatever the stream says. A score "as of now" (as_of unset) also moves
without any new entry when a month ends (the ledger counts a statement once its month has ended);
that change too shows within `max_age_s`.

Every value carries the global sequence of the user's newest ledger entry it reflects, and every
invalidation the global sequence of the entry that caused it. An invalidation drops only values
older than its entry, so the stream's replay of entries a value already reflects costs nothing.
A read in flight while a newer entry arrives must not store what it read, or the stale value
would outlive the invalidation: the cache remembers the newest entry seen per user, and `put`
refuses a value older than that.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

ValueT = TypeVar("ValueT")
CacheKey = tuple[str, datetime | None]

MAX_ENTRIES_DEFAULT = 40_000
MAX_AGE_S_DEFAULT = 60.0
# How many per-user newest sequences are remembered before they are forgotten together.
SEEN_USERS_MAX = 100_000


@dataclass(frozen=True)
class _Stored(Generic[ValueT]):
    value: ValueT
    reflects_sequence: int
    stored_at_s: float


class HistoryCache(Generic[ValueT]):
    """A thread-safe LRU with a maximum age and per-user invalidation."""

    def __init__(
        self,
        max_entries: int = MAX_ENTRIES_DEFAULT,
        max_age_s: float = MAX_AGE_S_DEFAULT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 0 or max_age_s < 0:
            raise ValueError("max_entries and max_age_s must not be negative")
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[CacheKey, _Stored[ValueT]] = OrderedDict()
        self._keys_by_user: dict[str, set[CacheKey]] = {}
        self._newest_sequence_by_user: dict[str, int] = {}
        self._epoch = 0

    def epoch(self) -> int:
        """The token to pass to `put` for a value read from now on."""
        with self._lock:
            return self._epoch

    def get(self, key: CacheKey) -> ValueT | None:
        with self._lock:
            stored = self._entries.get(key)
            if stored is None:
                return None
            if self._clock() - stored.stored_at_s > self.max_age_s:
                self._remove(key)
                return None
            self._entries.move_to_end(key)
            return stored.value

    def put(
        self,
        key: CacheKey,
        value: ValueT,
        reflects_sequence: int,
        epoch: int,
        read_at_s: float | None = None,
    ) -> None:
        """Stores `value`, read after `epoch` was taken and reflecting the user's entries up to
        global sequence `reflects_sequence`, unless a newer entry of the user was seen.
        `read_at_s` (on the cache's clock; default now) is when the history behind it was read:
        its age counts from then, and a value already past its age is not stored."""
        user_id = key[0]
        with self._lock:
            if self.max_entries == 0 or epoch != self._epoch:
                return
            if reflects_sequence < self._newest_sequence_by_user.get(user_id, 0):
                return
            now_s = self._clock()
            stored_at_s = now_s if read_at_s is None else min(read_at_s, now_s)
            if now_s - stored_at_s > self.max_age_s:
                return
            self._entries[key] = _Stored(value, reflects_sequence, stored_at_s)
            self._entries.move_to_end(key)
            self._keys_by_user.setdefault(user_id, set()).add(key)
            self._drop_least_recently_used(now_s)

    def invalidate_user(self, user_id: str, global_sequence: int) -> None:
        """The ledger recorded an entry about the user at `global_sequence`."""
        with self._lock:
            # Remembered for users not cached too, since a read in flight must still see it.
            # Past the bound every remembered sequence is forgotten at once and the epoch moves
            # instead: reads in flight are then refused, stored values stay.
            if len(self._newest_sequence_by_user) >= SEEN_USERS_MAX:
                self._newest_sequence_by_user.clear()
                self._epoch += 1
            newest = self._newest_sequence_by_user.get(user_id, 0)
            self._newest_sequence_by_user[user_id] = max(newest, global_sequence)
            for key in list(self._keys_by_user.get(user_id, ())):
                if self._entries[key].reflects_sequence < global_sequence:
                    self._remove(key)

    def clear(self) -> None:
        with self._lock:
            self._epoch += 1
            self._newest_sequence_by_user.clear()
            self._entries.clear()
            self._keys_by_user.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _drop_least_recently_used(self, now_s: float) -> None:
        """Drops entries from the least recently used end while the cache is over its size or
        they are past their age. An entry was stored no later than it was last used, so the
        least recently used one that is still young enough leaves the rest to `get`."""
        while self._entries:
            oldest_key, oldest = next(iter(self._entries.items()))
            if len(self._entries) <= self.max_entries and (
                now_s - oldest.stored_at_s <= self.max_age_s
            ):
                return
            self._remove(oldest_key)

    def _remove(self, key: CacheKey) -> None:
        self._entries.pop(key, None)
        keys = self._keys_by_user.get(key[0])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._keys_by_user[key[0]]
