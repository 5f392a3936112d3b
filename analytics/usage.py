"""The Usage tab's numbers: timeline buckets, range metrics, overview, pass list.

Every figure is a merge of window rollups (counters add, sketches add
bucket-wise), always within a ProjectScope. Buckets follow the requested time
zone: hourly buckets start at the zone's hours, daily buckets at its midnights,
so a DST day has 23 or 25 hours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any, Final
from zoneinfo import ZoneInfo

from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.analytics.scope import ProjectScope
from sentinel_usage.core.aggregate import UsageAggregate
from sentinel_usage.core.sketch import LatencySketch


class UsageRange(StrEnum):
    """A range ending now, named by its length: hours in hourly buckets, days in daily."""

    DAY = "24h"
    WEEK = "7d"
    MONTH = "30d"

    @property
    def buckets(self) -> int:
        return int(self[:-1])

    @property
    def granularity(self) -> str:
        return "hour" if self.endswith("h") else "day"


@dataclass(frozen=True)
class Bucket:
    start: datetime
    end: datetime


def bucket_bounds(rng: UsageRange, zone: ZoneInfo, now: datetime) -> list[Bucket]:
    """The range's buckets, oldest first; the last one holds `now` (it is partial)."""
    local_now = now.astimezone(zone)
    if rng.granularity == "hour":
        # Stepping in absolute (UTC) hours from the zone's current hour start keeps
        # to the zone's hour boundaries in every zone whose DST shift is a whole
        # hour. (Aware datetime arithmetic in Python is wall-clock arithmetic,
        # hence the conversion to UTC first.)
        current = _utc(local_now.replace(minute=0, second=0, microsecond=0))
        starts = [current - timedelta(hours=n) for n in range(rng.buckets - 1, -1, -1)]
        return [Bucket(s, s + timedelta(hours=1)) for s in starts]
    today = local_now.date()
    days = [today - timedelta(days=n) for n in range(rng.buckets - 1, -1, -1)]
    return [Bucket(_midnight(d, zone), _midnight(d + timedelta(days=1), zone)) for d in days]


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return _utc(datetime.combine(day, time(0), zone))


def _utc(value: datetime) -> datetime:
    return value.astimezone(ZoneInfo("UTC"))


@dataclass(frozen=True)
class BucketUsage:
    bucket: Bucket
    usage: UsageAggregate
    partial: bool


@dataclass(frozen=True)
class UsageReport:
    range: UsageRange
    zone: ZoneInfo
    buckets: list[BucketUsage]
    total: UsageAggregate
    generated_at: datetime

    @property
    def start(self) -> datetime:
        return self.buckets[0].bucket.start

    @property
    def end(self) -> datetime:
        return self.buckets[-1].bucket.end


@dataclass(frozen=True)
class PassOverview:
    total_requests: int
    success_count: int
    latency_sum_ms: float
    latency_count: int
    last_used_at: datetime | None


@dataclass(frozen=True)
class PassSummary:
    pass_id: str
    last_used_at: datetime | None
    total_requests_24h: int
    error_count_24h: int


_SUMS: Final = (
    "sum(total_requests), sum(success_count), sum(error_count), sum(token_generations), "
    "sum(token_failures), sum(latency_sum_ms), sum(latency_count), max(latency_max_ms), "
    "sum(sketch_zero_count), sumMap(sketch), sumMap(endpoint_counts), max(last_event_at)"
)


class UsageQuery:
    """Blocking: async code calls it through analytics/facade.py."""

    def __init__(self, clickhouse: ClickHouse) -> None:
        self._clickhouse = clickhouse

    def usage(
        self, scope: ProjectScope, pass_id: str, rng: UsageRange, zone: ZoneInfo, now: datetime
    ) -> UsageReport:
        buckets = bucket_bounds(rng, zone, now)
        query = scope.on("usage_rollups", pass_id).where(
            "window_start >= {start:DateTime64(3, 'UTC')} "
            "AND window_start < {end:DateTime64(3, 'UTC')}",
            start=buckets[0].start,
            end=buckets[-1].end,
        )
        rows = self._clickhouse.select(
            query,
            "arrayCount(s -> s <= window_start, {starts:Array(DateTime64(3, 'UTC'))}) "
            f"AS bucket, {_SUMS}",
            "GROUP BY bucket",
            starts=[b.start for b in buckets],
        )
        by_bucket = {int(row[0]): _aggregate(row[1:]) for row in rows}
        usages = [
            BucketUsage(b, by_bucket.get(i, UsageAggregate()), partial=b.end > now)
            for i, b in enumerate(buckets, start=1)
        ]
        total = UsageAggregate()
        for usage in usages:
            total = total.merge(usage.usage)
        return UsageReport(rng, zone, usages, total, now)

    def overview(self, scope: ProjectScope, pass_id: str) -> PassOverview:
        ((requests, successes, latency_sum, latency_count, last),) = self._clickhouse.select(
            scope.on("usage_rollups", pass_id),
            "sum(total_requests), sum(success_count), sum(latency_sum_ms), "
            "sum(latency_count), max(last_event_at)",
        )
        return PassOverview(
            int(requests), int(successes), float(latency_sum), int(latency_count), last
        )

    def passes(
        self,
        scope: ProjectScope,
        now: datetime,
        pass_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[PassSummary]:
        """The project's passes with activity (or only `pass_ids`), last used first
        (the `limit` most recently used)."""
        query = scope.on("usage_rollups")
        if pass_ids is not None:
            query = query.where("pass_id IN {pass_ids:Array(String)}", pass_ids=list(pass_ids))
        rows = self._clickhouse.select(
            query,
            "pass_id, max(last_event_at) AS last_used, "
            "sumIf(total_requests, window_start >= {since:DateTime64(3, 'UTC')}), "
            "sumIf(error_count, window_start >= {since:DateTime64(3, 'UTC')})",
            "GROUP BY pass_id ORDER BY last_used DESC, pass_id"
            + (" LIMIT {limit:UInt32}" if limit is not None else ""),
            since=now - timedelta(hours=24),
            limit=limit,
        )
        return [PassSummary(r[0], r[1], int(r[2]), int(r[3])) for r in rows]


def _aggregate(row: tuple[Any, ...]) -> UsageAggregate:
    tr, sc, ec, tg, tf, ls, lc, lm, sz, sketch, endpoints, last = row
    return UsageAggregate(
        total_requests=int(tr),
        success_count=int(sc),
        error_count=int(ec),
        token_generations=int(tg),
        token_failures=int(tf),
        latency_sum_ms=float(ls),
        latency_count=int(lc),
        latency_max_ms=float(lm),
        sketch=LatencySketch({int(k): int(v) for k, v in sketch.items()}, int(sz)),
        endpoint_counts={str(k): int(v) for k, v in endpoints.items()},
        last_event_at=last,
    )
