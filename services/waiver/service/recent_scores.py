"""The scores the waiver got lately, kept while nothing the ledger records can have changed them.

A CreateOrder needs the user's score, and the score service answers a score it already holds
from its own cache, which it keeps fresh by following the ledger's entries that change credit
histories. The waiver follows the same entries (`services.common.history_watch`) and keeps the
scores it was given on the same terms, so that an order of a user scored a moment ago costs no
call to the score service. A kept score is used only while all of these hold:

* the waiver's watch is caught up: it has heard of every entry committed before it began, and
  has not ended since (until it has, an entry may have gone unheard). The watch starts from the
  newest entry when the waiver starts, so a score is kept only if the watch that was caught up
  when it was asked for still is when it comes: an entry committed before that watch began is
  then one the score reflects;
* no entry of the user's credit history newer than the one the score reflects
  (`FetchedScore.ledger_sequence`) has arrived: an obligation's outcome, a partner's statement,
  a consent withdrawn. Holds and capacity changes are not such entries, so the orders themselves
  leave the score in place, as they leave it in the score service's cache;
* it is younger than `max_age_s`, counted from when the ledger was read for it, so that what
  depends on time alone (an obligation that goes unpaid past its due time) is seen as soon as
  the score service's own cache would see it;
* it is by the model of the newest score fetched: a score by another model empties the store.

A score is not kept when an entry newer than it has already arrived, so a score read before a
change and returned after it is never kept. What is left is the stream's own delay, the same
for this store as for the score service's cache: an entry committed a moment before an order
may be heard of a moment after it.

At most `max_users` scores are kept, the least recently used leaving first; the newest entry
heard of is remembered for at most `REMEMBERED_CHANGES_MAX` users, so that a score fetched while
an entry of its user arrives is not kept (only that many changes during one fetch could let one
through).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from services.common.clock import Clock
from services.common.deadline import Deadline
from services.waiver.domain.decision import ScoreView
from services.waiver.service.ports import FetchedScore, ScoreSource

MAX_USERS_DEFAULT = 20_000
REMEMBERED_CHANGES_MAX = 100_000
_SECOND_US = 1_000_000


@dataclass(frozen=True, slots=True)
class _Kept:
    view: ScoreView
    ledger_sequence: int
    data_as_of_us: int


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
        assert max_age_s >= 0 and max_users > 0
        self._source = source
        self._clock = clock
        self._max_age_us = round(max_age_s * _SECOND_US)
        self._max_users = max_users
        self._lock = threading.Lock()
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._changed: OrderedDict[str, int] = OrderedDict()
        self._model_version = ""
        self._caught_up = False
        # Counts the watches that caught up: a score is kept only if the same watch was caught up
        # from before it was asked for until it came, so that no entry between its reading and
        # the watch's start can have gone unheard.
        self._watch_number = 0

    def __len__(self) -> int:
        return len(self._kept)

    def get_score(self, user_id: str, deadline: Deadline) -> ScoreView:
        """The user's kept score while it stands, else the score service's (kept if it may
        be); raises what the source raises."""
        if self._max_age_us == 0:
            return self._source.fetch_score(user_id, deadline).view
        now_us = self._clock.now_us()
        with self._lock:
            kept = self._kept.get(user_id)
            if kept is not None and now_us - kept.data_as_of_us >= self._max_age_us:
                del self._kept[user_id]
            elif kept is not None and self._caught_up:
                self._kept.move_to_end(user_id)
                return kept.view
            watch_number = self._watch_number if self._caught_up else None
        fetched = self._source.fetch_score(user_id, deadline)
        self._keep(user_id, fetched, now_us, watch_number)
        return fetched.view

    def _keep(
        self, user_id: str, fetched: FetchedScore, now_us: int, watch_number: int | None
    ) -> None:
        if fetched.data_as_of_us is None or now_us - fetched.data_as_of_us >= self._max_age_us:
            return
        with self._lock:
            if fetched.view.model_version != self._model_version:
                self._kept.clear()
                self._model_version = fetched.view.model_version
            if (
                not self._caught_up
                or watch_number != self._watch_number
                or fetched.ledger_sequence < self._changed.get(user_id, 0)
            ):
                return
            self._kept[user_id] = _Kept(
                fetched.view, fetched.ledger_sequence, fetched.data_as_of_us
            )
            self._kept.move_to_end(user_id)
            while len(self._kept) > self._max_users:
                self._kept.popitem(last=False)

    # What the watch on the ledger's credit history entries reports.

    def history_changed(self, user_id: str, global_sequence: int) -> None:
        """An entry of the user's credit history arrived: the user's kept score no longer
        stands, nor does any fetched before it."""
        with self._lock:
            kept = self._kept.get(user_id)
            if kept is not None and kept.ledger_sequence < global_sequence:
                del self._kept[user_id]
            if global_sequence > self._changed.get(user_id, 0):
                self._changed[user_id] = global_sequence
            self._changed.move_to_end(user_id)
            while len(self._changed) > REMEMBERED_CHANGES_MAX:
                self._changed.popitem(last=False)

    def caught_up(self) -> None:
        """The watch has heard of every entry committed before it began."""
        with self._lock:
            self._caught_up = True
            self._watch_number += 1

    def behind(self) -> None:
        """The watch ended: until the next one has caught up, a change may go unheard."""
        with self._lock:
            self._caught_up = False
