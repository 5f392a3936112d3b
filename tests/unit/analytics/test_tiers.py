"""TierPlan: each bucket from the coarsest tier that fits it and still holds it, finer
tiers only at its edges, and what none holds said (pure arithmetic, no engine)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sentinel_usage.analytics.tiers import Span, plan, retention
from sentinel_usage.analytics.usage import UsageRange, bucket_bounds
from sentinel_usage.core.windows import DEFAULT_TIERS, rollup_tiers

NOW = datetime(2026, 11, 27, 20, 41, 7, tzinfo=UTC)
MINUTE, QUARTER, DAY = DEFAULT_TIERS


def boundaries(rng: UsageRange, zone: str) -> list[datetime]:
    buckets = bucket_bounds(rng, ZoneInfo(zone), NOW)
    return [b.start for b in buckets] + [buckets[-1].end]


def windows_of(spans: list[Span], size: timedelta) -> int:
    return sum((s.end - s.start) // size for s in spans)


def test_utc_days_are_one_row_each_from_the_day_tier() -> None:
    bounds = boundaries(UsageRange.MONTH, "UTC")
    covered = plan(bounds, DEFAULT_TIERS, NOW)
    assert covered.spans == {DAY: [Span(bounds[0], bounds[-1])]}
    assert covered.uncovered == []
    assert retention(bounds, DEFAULT_TIERS, NOW, covered).days == 400


@pytest.mark.parametrize(
    "zone", ["Europe/Berlin", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe"]
)
def test_any_zones_days_and_hours_are_whole_quarter_hours(zone: str) -> None:
    for rng in UsageRange:
        bounds = boundaries(rng, zone)
        covered = plan(bounds, DEFAULT_TIERS, NOW)
        # the minute tier is never needed: every zone's hours fall on quarter hours
        assert set(covered.spans) <= {QUARTER, DAY}, (zone, rng)
        assert covered.uncovered == []
        if rng is UsageRange.DAY:
            assert covered.spans == {QUARTER: [Span(bounds[0], bounds[-1])]}
            assert windows_of(covered.spans[QUARTER], QUARTER.size) == 24 * 4


def test_a_ragged_edge_is_answered_by_the_finest_tier() -> None:
    start = datetime(2026, 11, 27, 10, 7, tzinfo=UTC)
    end = datetime(2026, 11, 28, 3, 31, tzinfo=UTC)
    covered = plan([start, end], DEFAULT_TIERS, NOW)
    assert covered.spans == {
        QUARTER: [Span(datetime(2026, 11, 27, 10, 15, tzinfo=UTC),
                       datetime(2026, 11, 28, 3, 30, tzinfo=UTC))],
        MINUTE: [Span(start, datetime(2026, 11, 27, 10, 15, tzinfo=UTC)),
                 Span(datetime(2026, 11, 28, 3, 30, tzinfo=UTC), end)],
    }  # fmt: skip


def test_what_no_tier_holds_any_more_is_uncovered_and_the_range_partial() -> None:
    short = rollup_tiers(60, 3, 7, 7)
    bounds = boundaries(UsageRange.MONTH, "Asia/Kolkata")
    covered = plan(bounds, short, NOW)
    kept = retention(bounds, short, NOW, covered)
    assert kept.partial
    assert kept.days == 7
    assert kept.held_from == datetime(2026, 11, 20, 20, 45, tzinfo=UTC)  # quarter-aligned
    assert covered.uncovered == [Span(bounds[0], kept.held_from)]
    assert covered.spans[short[1]] == [Span(kept.held_from, bounds[-1])]
    week = boundaries(UsageRange.WEEK, "Asia/Kolkata")
    assert not retention(week, short, NOW, plan(week, short, NOW)).partial


def test_older_utc_days_fall_back_to_quarter_hours_while_those_hold_them() -> None:
    tiers = rollup_tiers(60, 3, 90, 10)  # days kept only 10 days
    bounds = boundaries(UsageRange.MONTH, "UTC")
    covered = plan(bounds, tiers, NOW)
    day_from = tiers[2].held_from(NOW)
    assert covered.spans[tiers[2]] == [Span(day_from, bounds[-1])]
    assert covered.spans[tiers[1]] == [Span(bounds[0], day_from)]
    assert covered.uncovered == []
    assert not retention(bounds, tiers, NOW, covered).partial


def test_rows_held_per_pass_with_the_default_retentions() -> None:
    # 3 days of minutes, 90 days of quarter hours, 400 days
    assert [t.rows_held() for t in DEFAULT_TIERS] == [4320, 8640, 400]
