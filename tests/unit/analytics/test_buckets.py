from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sentinel_usage.analytics.usage import UsageRange, bucket_bounds


def test_24h_is_24_hourly_buckets_ending_with_the_current_hour() -> None:
    now = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    buckets = bucket_bounds(UsageRange.DAY, ZoneInfo("UTC"), now)
    assert len(buckets) == 24
    assert buckets[-1].start == datetime(2026, 11, 24, 9, tzinfo=UTC)
    assert buckets[0].start == datetime(2026, 11, 23, 10, tzinfo=UTC)
    assert all(b.end - b.start == timedelta(hours=1) for b in buckets)
    assert all(a.end == b.start for a, b in itertools.pairwise(buckets))


def test_hourly_buckets_follow_a_half_hour_zone() -> None:
    now = datetime(2026, 11, 24, 9, 10, tzinfo=UTC)  # 14:40 in Kolkata
    buckets = bucket_bounds(UsageRange.DAY, ZoneInfo("Asia/Kolkata"), now)
    assert buckets[-1].start == datetime(2026, 11, 24, 8, 30, tzinfo=UTC)


def test_daily_buckets_start_at_local_midnight_across_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # Clocks went back on 2026-10-25: that day has 25 hours; forward on 2026-03-29: 23 hours.
    autumn = bucket_bounds(UsageRange.WEEK, berlin, datetime(2026, 10, 27, 12, tzinfo=UTC))
    lengths = {b.start.astimezone(berlin).date().isoformat(): b.end - b.start for b in autumn}
    assert lengths["2026-10-25"] == timedelta(hours=25)
    assert lengths["2026-10-24"] == timedelta(hours=24)
    assert all(b.start.astimezone(berlin).hour == 0 for b in autumn)
    spring = bucket_bounds(UsageRange.MONTH, berlin, datetime(2026, 4, 10, tzinfo=UTC))
    assert len(spring) == 30
    assert {b.end - b.start for b in spring} == {timedelta(hours=23), timedelta(hours=24)}
    assert spring[-1].start == datetime(2026, 4, 9, 22, tzinfo=UTC)  # 00:00 CEST
