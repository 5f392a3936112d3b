"""RollupKeys says 'not in the rollups' only where it knows every window there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sentinel_usage.core.aggregate import WindowKey
from sentinel_usage.stream.rollup_keys import RollupKeys

SINCE = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def minute(at: datetime, pass_id: str = "SP-1") -> WindowKey:
    return WindowKey("proj-a", pass_id, at, 60)


def test_a_window_ending_from_since_is_held_only_if_added() -> None:
    written = minute(SINCE + timedelta(minutes=5))
    keys = RollupKeys(SINCE, [written])
    assert keys.may_hold(written)
    assert not keys.may_hold(minute(SINCE + timedelta(minutes=6)))
    assert not keys.may_hold(minute(SINCE + timedelta(minutes=5), "SP-2"))
    # Ending before `since`: not known either way, so it may be there.
    assert keys.may_hold(minute(SINCE - timedelta(minutes=2)))
    # A day window that started before `since` but ends after it is known.
    day = WindowKey("proj-a", "SP-1", datetime(2026, 11, 24, tzinfo=UTC), 86_400)
    assert not keys.may_hold(day)
    keys.add([day])
    assert keys.may_hold(day)
    assert len(keys) == 2


def test_since_moves_on_and_never_back() -> None:
    early, late = minute(SINCE + timedelta(minutes=1)), minute(SINCE + timedelta(hours=3))
    keys = RollupKeys(SINCE, [early, late])
    keys.forget_before(SINCE + timedelta(hours=2))
    assert keys.may_hold(early)  # now before `since`: looked up again
    assert keys.may_hold(late)
    assert not keys.may_hold(minute(SINCE + timedelta(hours=3, minutes=1)))
    assert len(keys) == 1  # the early one's hour is forgotten
    keys.forget_before(SINCE)  # back: ignored
    assert keys.since == SINCE + timedelta(hours=2)
