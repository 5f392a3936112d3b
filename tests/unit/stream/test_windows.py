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
    changed = windows.apply(assigned(windows, first), {})
    assert {s.window_start.minute for s in changed} == {0, 59}
    current = {s.window_start.minute: s for s in changed}[0]
    assert current.aggregate.total_requests == 2
    assert current.last_offset == 11

    # The same records again (a redelivery after a crash): nothing changes.
    assert windows.apply(assigned(windows, first), {}) == []
    # A later record in the same window is applied.
    (again,) = windows.apply(assigned(windows, [at(12, NOW)]), {})
    assert again.aggregate.total_requests == 3


def test_a_late_event_is_added_to_the_stored_rollup_of_its_window() -> None:
    store = InMemoryWindowStore()
    windows = UsageWindows(store)
    late_time = NOW - timedelta(hours=5)
    key = WindowKey("proj-a", "SP-2024-A1B2C3", window_start(late_time, timedelta(minutes=1)))
    assert windows.missing([key]) == [key]
    stored = WindowState(*key, window_seconds=60, source_partition=0, last_offset=3)
    stored.aggregate.total_requests = stored.aggregate.success_count = 7
    (state,) = windows.apply(assigned(windows, [at(50, late_time)]), {key: stored})
    assert state.aggregate.total_requests == 8
    assert windows.missing([key]) == []


def test_old_windows_are_evictable_after_the_resident_horizon() -> None:
    windows = UsageWindows(InMemoryWindowStore(), WindowPolicy(resident=timedelta(minutes=15)))
    windows.apply(
        assigned(windows, [at(1, NOW - timedelta(minutes=30)), at(2, NOW - timedelta(minutes=5))]),
        {},
    )
    old = windows.evictable(NOW)
    assert [s.window_start for s in old] == [datetime(2026, 11, 24, 11, 30, tzinfo=UTC)]
    windows.evict(old)
    assert len(windows.resident()) == 1
