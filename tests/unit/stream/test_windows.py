from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sentinel_usage.core.aggregate import WindowKey, WindowState
from sentinel_usage.core.clock import FixedClock
from sentinel_usage.core.events import EventValidator, UsageEvent, ValidationPolicy
from sentinel_usage.core.windows import window_start
from sentinel_usage.stream.decode import SourceRecord
from sentinel_usage.stream.windows import UsageWindows, WindowPolicy
from tests.factories import raw_event
from tests.stream_support import InMemoryWindowStore, assigned

NOW = datetime(2026, 11, 24, 12, 0, 30, tzinfo=UTC)
VALIDATOR = EventValidator(ValidationPolicy(clock=FixedClock(NOW)))


def at(offset: int, started: datetime, **kw: object) -> tuple[UsageEvent, SourceRecord]:
    event = VALIDATOR.validate(raw_event(started_at=started.isoformat(), **kw))
    return event, SourceRecord("sentinel.usage.events", 0, offset, b"SP", b"")


def test_window_start_arithmetic() -> None:
    minute = timedelta(minutes=1)
    assert window_start(datetime(2026, 11, 24, 12, 0, 59, 999000, tzinfo=UTC), minute) == datetime(
        2026, 11, 24, 12, 0, tzinfo=UTC
    )
    assert window_start(datetime(2026, 11, 24, 12, 1, tzinfo=UTC), minute) == datetime(
        2026, 11, 24, 12, 1, tzinfo=UTC
    )
    five = timedelta(minutes=5)
    assert window_start(datetime(2026, 11, 24, 12, 9, 59, tzinfo=UTC), five).minute == 5


def test_events_land_in_their_own_windows_and_a_replayed_record_is_skipped() -> None:
    windows = UsageWindows(InMemoryWindowStore())
    first = [
        at(10, NOW - timedelta(seconds=20)),  # 12:00:10
        at(10, NOW - timedelta(seconds=40)),  # 11:59:50, same record
        at(11, NOW),
    ]
    changed = [s for s in windows.apply(assigned(windows, first), {}) if s.window_seconds == 60]
    assert {s.window_start.minute for s in changed} == {0, 59}
    current = {s.window_start.minute: s for s in changed}[0]
    assert current.aggregate.total_requests == 2
    assert current.last_offset == 11

    # The same records again (a redelivery after a crash): nothing changes.
    assert windows.apply(assigned(windows, first), {}) == []
    # A later record in the same window is applied.
    again = windows.apply(assigned(windows, [at(12, NOW)]), {})
    assert {s.window_seconds: s.aggregate.total_requests for s in again} == {
        60: 3,
        900: 3,  # 12:00-12:15
        86_400: 4,  # the whole day, 11:59:50 included
    }


def test_a_late_event_is_added_to_the_stored_rollup_of_its_window() -> None:
    store = InMemoryWindowStore()
    windows = UsageWindows(store)
    late_time = NOW - timedelta(hours=5)
    key = WindowKey("proj-a", "SP-2024-A1B2C3", window_start(late_time, timedelta(minutes=1)), 60)
    assert windows.missing([key]) == [key]
    stored = WindowState(*key, source_partition=0, last_offset=3)
    stored.aggregate.total_requests = stored.aggregate.success_count = 7
    changed = windows.apply(assigned(windows, [at(50, late_time)]), {key: stored})
    by_tier = {s.window_seconds: s.aggregate.total_requests for s in changed}
    # the stored minute's 7 and this one; the coarser tiers (not loaded) hold this one
    assert by_tier == {60: 8, 900: 1, 86_400: 1}
    assert windows.missing([key]) == []


def test_old_windows_are_evictable_after_the_resident_horizon() -> None:
    windows = UsageWindows(
        InMemoryWindowStore(), WindowPolicy(resident=timedelta(minutes=15), coarser=())
    )
    windows.apply(
        assigned(windows, [at(1, NOW - timedelta(minutes=30)), at(2, NOW - timedelta(minutes=5))]),
        {},
    )
    old = windows.evictable(NOW)
    assert [s.window_start for s in old] == [datetime(2026, 11, 24, 11, 30, tzinfo=UTC)]
    windows.evict(old)
    assert len(windows.resident()) == 1


def test_a_window_changed_lately_stays_until_untouched_for_the_resident_horizon() -> None:
    """A late event's window is kept as a current one is: evicted at once, the next
    late event of it would look it up in the rollups again."""
    windows = UsageWindows(
        InMemoryWindowStore(), WindowPolicy(resident=timedelta(minutes=15), coarser=())
    )
    late = [at(1, NOW - timedelta(minutes=40))]
    windows.apply(assigned(windows, late), {}, now=NOW)
    assert windows.evictable(NOW + timedelta(minutes=14)) == []
    (old,) = windows.evictable(NOW + timedelta(minutes=16))
    assert old.window_start == datetime(2026, 11, 24, 11, 20, tzinfo=UTC)


def test_each_tier_window_is_evicted_once_it_has_ended_for_the_resident_horizon() -> None:
    windows = UsageWindows(InMemoryWindowStore(), WindowPolicy(resident=timedelta(minutes=15)))
    windows.apply(assigned(windows, [at(1, NOW - timedelta(minutes=40))]), {})  # 11:20:30
    old = windows.evictable(NOW)
    # the minute and 11:15-11:30 have ended more than 15 minutes ago; the day has not
    assert sorted(s.window_seconds for s in old) == [60, 900]
    windows.evict(old)
    assert [s.window_seconds for s in windows.resident()] == [86_400]
    assert windows.resident(60) == []


def test_a_window_of_the_finest_tier_keeps_its_store_key_and_the_others_are_apart() -> None:
    start = datetime(2026, 11, 24, tzinfo=UTC)
    keys = {WindowKey("p", "SP-1", start, seconds).encode() for seconds in (60, 900, 86_400)}
    assert len(keys) == 3
    # the form a changelog written before the tiers holds
    assert WindowKey("p", "SP-1", start, 60).encode() == b"p\x1fSP-1\x1f1795478400000"


def test_a_store_key_tells_its_window_for_every_tier() -> None:
    """Eviction and the alerts find windows by their keys, decoding only those they take."""
    start = datetime(2026, 11, 24, 11, 15, tzinfo=UTC)
    for seconds in (60, 900, 86_400):
        key = WindowKey("proj-1", "SP-1", start, seconds)
        assert WindowKey.span_millis(key.encode(), 60) == (start.timestamp() * 1000, seconds)


def test_resident_windows_are_chosen_by_tier_and_start() -> None:
    windows = UsageWindows(InMemoryWindowStore(), WindowPolicy(coarser=(900,)))
    windows.apply(
        assigned(windows, [at(1, NOW - timedelta(minutes=40)), at(2, NOW - timedelta(minutes=5))]),
        {},
    )
    since = NOW - timedelta(minutes=20)  # 11:40:30: the quarter from 11:45 is in
    assert [s.window_start for s in windows.resident(60, since)] == [
        datetime(2026, 11, 24, 11, 55, tzinfo=UTC)
    ]
    assert sorted(s.window_seconds for s in windows.resident(starting_from=since)) == [60, 900]
    assert len(windows.resident()) == 4
