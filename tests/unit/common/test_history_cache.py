"""The cache of what was derived from credit histories: bounded in size and age, invalidated per
user, never storing stale reads."""

from __future__ import annotations

from datetime import UTC, datetime

from services.common.history_cache import HistoryCache

AS_OF = datetime(2005, 10, 1, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def put(
    cache: HistoryCache[str],
    user_id: str,
    value: str,
    as_of: datetime | None = AS_OF,
    reflects_sequence: int = 10,
) -> None:
    cache.put((user_id, as_of), value, reflects_sequence, cache.epoch())


def test_a_value_is_served_until_it_is_too_old() -> None:
    clock = FakeClock()
    cache: HistoryCache[str] = HistoryCache(max_entries=10, max_age_s=60, clock=clock)
    put(cache, "u-1", "history")

    clock.now_s = 60
    assert cache.get(("u-1", AS_OF)) == "history"
    clock.now_s = 60.001
    assert cache.get(("u-1", AS_OF)) is None


def test_a_values_age_counts_from_when_its_history_was_read() -> None:
    clock = FakeClock()
    clock.now_s = 100
    cache: HistoryCache[str] = HistoryCache(max_entries=10, max_age_s=60, clock=clock)
    cache.put(("u-1", None), "read a while ago", 10, cache.epoch(), read_at_s=70)
    cache.put(("u-2", None), "read too long ago", 10, cache.epoch(), read_at_s=39)

    assert cache.get(("u-1", None)) == "read a while ago"
    assert cache.get(("u-2", None)) is None
    clock.now_s = 130.001
    assert cache.get(("u-1", None)) is None


def test_the_least_recently_used_value_leaves_first_when_full() -> None:
    cache: HistoryCache[str] = HistoryCache(max_entries=2, max_age_s=60)
    put(cache, "u-1", "one")
    put(cache, "u-2", "two")
    cache.get(("u-1", AS_OF))
    put(cache, "u-3", "three")

    assert cache.get(("u-2", AS_OF)) is None
    assert cache.get(("u-1", AS_OF)) == "one"
    assert len(cache) == 2


def test_values_past_their_age_are_dropped_as_new_ones_come_even_if_never_asked_for() -> None:
    """Memory follows the users scored lately, not every user ever scored."""
    clock = FakeClock()
    cache: HistoryCache[str] = HistoryCache(max_entries=100_000, max_age_s=60, clock=clock)
    for index in range(1_000):
        put(cache, f"u-{index}", "history")
    clock.now_s = 30
    put(cache, "u-recent", "history")
    cache.get(("u-0", AS_OF))  # used again, so it stays behind u-recent in the order of use

    clock.now_s = 61
    put(cache, "u-new", "history")

    assert len(cache) == 3  # u-recent, u-0 and u-new: the 999 others are gone
    assert cache.get(("u-0", AS_OF)) is None  # stored at 0: too old when asked for
    assert cache.get(("u-recent", AS_OF)) == "history"
    assert cache.get(("u-new", AS_OF)) == "history"
    assert len(cache) == 2


def test_invalidating_a_user_drops_every_as_of_of_that_user_only() -> None:
    cache: HistoryCache[str] = HistoryCache()
    put(cache, "u-1", "then")
    put(cache, "u-1", "now", as_of=None)
    put(cache, "u-2", "other")

    cache.invalidate_user("u-1", 11)

    assert cache.get(("u-1", AS_OF)) is None and cache.get(("u-1", None)) is None
    assert cache.get(("u-2", AS_OF)) == "other"


def test_an_entry_the_value_already_reflects_leaves_it_cached() -> None:
    cache: HistoryCache[str] = HistoryCache()
    put(cache, "u-1", "history up to entry 10", reflects_sequence=10)

    cache.invalidate_user("u-1", 10)  # the stream replays entries written before the read
    cache.invalidate_user("u-1", 3)

    assert cache.get(("u-1", AS_OF)) == "history up to entry 10"


def test_a_read_older_than_an_entry_seen_meanwhile_is_not_stored() -> None:
    cache: HistoryCache[str] = HistoryCache()
    epoch = cache.epoch()
    cache.invalidate_user("u-1", 11)  # a new entry arrived while the ledger was being read

    cache.put(("u-1", AS_OF), "read before entry 11", 10, epoch)
    assert cache.get(("u-1", AS_OF)) is None

    cache.put(("u-1", AS_OF), "read after entry 11", 11, epoch)
    assert cache.get(("u-1", AS_OF)) == "read after entry 11"


def test_a_read_that_started_before_a_clear_is_not_stored() -> None:
    cache: HistoryCache[str] = HistoryCache()
    epoch = cache.epoch()
    cache.clear()

    cache.put(("u-1", AS_OF), "read before the clear", 10, epoch)

    assert cache.get(("u-1", AS_OF)) is None


def test_a_cache_of_size_zero_stores_nothing() -> None:
    cache: HistoryCache[str] = HistoryCache(max_entries=0)
    put(cache, "u-1", "history")
    assert cache.get(("u-1", AS_OF)) is None
