"""The scores the waiver got lately, kept while nothing the ledger records can have changed them.

A CreateOrder needs the user's score, and the score service answers a score it already holds
from its own cache, which it keeps fresh by following the ledger's entries that change credit
histories. The waiver follows the same entries (`services.common.history_watch`) and keeps the
scores it was given on the same terms, so that an order of a user scored a moment ago costs no
call to the score service. A kept score is used only while all of these hold:

* the waiver's watch is caught up: it has heard of every entry committed before it began, and
  has not ended since. When a watch ends every kept score is dropped, and none is kept again
  until the next watch has caught up, so no entry can have gone unheard;
* no entry of the user's credit history newer than the one the score reflects
  (`FetchedScore.ledger_sequence`) has arrived: an obligation's outcome, a partner's statement,
  a consent withdrawn. Holds and capacity changes are not such entries, so the orders themselves
  leave the score in place, as they leave it in the score service's cache;
* it is younger than `max_age_s`, counted from when the ledger was read for it, so that what
  depends on time alone (an obligation that goes unpaid past its due time) is seen as soon as
  the score service's own cache would see it;
* it is by the model of the newest score fetched: once a score by another model comes, every
  score kept from the one before is asked for again.

The keeping itself is the score service's: `services.common.history_cache`, which also refuses
a score read before an entry already heard of. What is left is the stream's own delay, the same
for this store as for the score service's cache: an entry committed a moment before an order
may be heard of a moment after it.
"""

from __future__ import annotations

import threading

from services.common.clock import Clock
from services.common.deadline import Deadline
from services.common.history_cache import HistoryCache
from services.waiver.domain.decision import ScoreView
from services.waiver.service.ports import ScoreSource

MAX_USERS_DEFAULT = 20_000
_SECOND_US = 1_000_000


class RecentScores:
    """`Scores` over a `ScoreSource`, keeping what it fetched on the terms above; `max_age_s`
    0 keeps nothing."""

    def __init__(
        self,
        source: ScoreSource,
        clock: Clock,
        *,
        max_age_s: float,
        max_users: int = MAX_USERS_DEFAULT,
    ) -> None:
        self._source = source
        self._kept: HistoryCache[ScoreView] = HistoryCache(
            max_users if max_age_s > 0 else 0,
            max_age_s,
            clock=lambda: clock.now_us() / _SECOND_US,
        )
        self._lock = threading.Lock()
        self._model_version = ""
        self._caught_up = False

    def __len__(self) -> int:
        return len(self._kept)

    def get_score(self, user_id: str, deadline: Deadline) -> ScoreView:
        """The user's kept score while it stands, else the score service's (kept if it may
        be); raises what the source raises."""
        key = (user_id, None)
        # Taken first: a watch that ends from now on empties the cache and moves its epoch, so
        # what is fetched below is not kept.
        epoch = self._kept.epoch()
        with self._lock:
            caught_up = self._caught_up
            model_version = self._model_version
        if caught_up:
            kept = self._kept.get(key)
            if kept is not None and kept.model_version == model_version:
                return kept
        fetched = self._source.fetch_score(user_id, deadline)
        with self._lock:
            self._model_version = fetched.view.model_version
        if caught_up and fetched.data_as_of_us is not None:
            self._kept.put(
                key,
                fetched.view,
                fetched.ledger_sequence,
                epoch,
                read_at_s=fetched.data_as_of_us / _SECOND_US,
            )
        return fetched.view

    # What the watch on the ledger's credit history entries reports.

    def history_changed(self, user_id: str, global_sequence: int) -> None:
        """An entry of the user's credit history arrived: the user's kept score no longer
        stands, nor does any fetched before it."""
        self._kept.invalidate_user(user_id, global_sequence)

    def caught_up(self) -> None:
        """The watch has heard of every entry committed before it began."""
        with self._lock:
            self._caught_up = True

    def behind(self) -> None:
        """The watch ended: until the next one has caught up, a change may go unheard."""
        with self._lock:
            self._caught_up = False
            self._kept.clear()
