"""The Usage tab's numbers: timeline buckets, range metrics, overview, pass list.

Every figure is a merge of window rollups (counters add, sketches add
bucket-wise), always within a ProjectScope, read from the rollup tiers each range
needs (analytics/tiers.py). Buckets follow the requested time
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
from sentinel_usage.analytics.tiers import Retention, Span, plan, retention
from sentinel_usage.core.aggregate import UsageAggregate
from sentinel_usage.core.sketch import LatencySketch
from sentinel_usage.core.windows import DEFAULT_TIERS, RollupTier


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
    retention: Retention

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
    """Blocking: async code calls it through analytics/facade.py. Reads the rollup
    tiers (core/windows.py) through a TierPlan (analytics/tiers.py)."""

    def __init__(self, clickhouse: ClickHouse, tiers: Sequence[RollupTier] = DEFAULT_TIERS) -> None:
        self._clickhouse = clickhouse
        self._tiers = tuple(tiers)
        self._finest = min(self._tiers, key=lambda t: t.seconds)
        self._longest = max(self._tiers, key=lambda t: t.retention_days)

    def usage(
        self, scope: ProjectScope, pass_id: str, rng: UsageRange, zone: ZoneInfo, now: datetime
    ) -> UsageReport:
        buckets = bucket_bounds(rng, zone, now)
        boundaries = [b.start for b in buckets] + [buckets[-1].end]
        covered = plan(boundaries, self._tiers, now)
        by_bucket: dict[int, UsageAggregate] = {}
        for tier, spans in covered.spans.items():
            for bucket, rows in self._bucketed(scope, pass_id, tier, spans, boundaries[:-1]):
                by_bucket[bucket] = by_bucket.get(bucket, UsageAggregate()).merge(rows)
        usages = [
            BucketUsage(b, by_bucket.get(i, UsageAggregate()), partial=b.end > now)
            for i, b in enumerate(buckets, start=1)
        ]
        total = UsageAggregate()
        for usage in usages:
            total = total.merge(usage.usage)
        kept = retention(boundaries, self._tiers, now, covered)
        return UsageReport(rng, zone, usages, total, now, kept)

    def _bucketed(
        self,
        scope: ProjectScope,
        pass_id: str,
        tier: RollupTier,
        spans: Sequence[Span],
        starts: Sequence[datetime],
    ) -> list[tuple[int, UsageAggregate]]:
        """The merged rows of `tier` whose windows start within `spans`, per bucket
        (1 = the bucket starting at starts[0])."""
        bounds: dict[str, datetime] = {}
        clauses = []
        for i, span in enumerate(spans):
            bounds[f"from{i}"], bounds[f"to{i}"] = span.start, span.end
            clauses.append(
                f"window_start >= {{from{i}:DateTime64(3, 'UTC')}} "
                f"AND window_start < {{to{i}:DateTime64(3, 'UTC')}}"
            )
        rows = self._clickhouse.select(
            scope.on(tier.table, pass_id).where(" OR ".join(clauses), **bounds),
            "arrayCount(s -> s <= window_start, {starts:Array(DateTime64(3, 'UTC'))}) "
            f"AS bucket, {_SUMS}",
            "GROUP BY bucket",
            starts=list(starts),
        )
        return [(int(row[0]), _aggregate(row[1:])) for row in rows]

    def overview(self, scope: ProjectScope, pass_id: str) -> PassOverview:
        """Lifetime totals: all the pass's rows of the tier kept longest."""
        ((requests, successes, latency_sum, latency_count, last),) = self._clickhouse.select(
            scope.on(self._longest.table, pass_id),
            "sum(total_requests), sum(success_count), sum(latency_sum_ms), "
            "sum(latency_count), max(last_event_at)",
        )
        return PassOverview(
            int(requests), int(successes), float(latency_sum), int(latency_count), last
        )

    def has_usage(self, scope: ProjectScope, pass_id: str) -> bool:
        """Whether the tier kept longest holds any window of the pass."""
        return bool(self._clickhouse.select(scope.on(self._longest.table, pass_id), "1", "LIMIT 1"))

    def passes(
        self,
        scope: ProjectScope,
        now: datetime,
        pass_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[PassSummary]:
        """The project's passes with activity (or only `pass_ids`), last used first
        (the `limit` most recently used): when last used, from the tier kept longest;
        the last 24 hours' figures from the window's own tier, to the window."""
        query = scope.on(self._longest.table)
        if pass_ids is not None:
            query = query.where("pass_id IN {pass_ids:Array(String)}", pass_ids=list(pass_ids))
        used = self._clickhouse.select(
            query,
            "pass_id, max(last_event_at) AS last_used",
            "GROUP BY pass_id ORDER BY last_used DESC, pass_id"
            + (" LIMIT {limit:UInt32}" if limit is not None else ""),
            limit=limit,
        )
        if not used:
            return []
        recent = self._clickhouse.select(
            scope.on(self._finest.table).where(
                "pass_id IN {pass_ids:Array(String)} "
                "AND window_start >= {since:DateTime64(3, 'UTC')}",
                pass_ids=[row[0] for row in used],
                since=now - timedelta(hours=24),
            ),
            "pass_id, sum(total_requests), sum(error_count)",
            "GROUP BY pass_id",
        )
        day = {row[0]: (int(row[1]), int(row[2])) for row in recent}
        return [PassSummary(p, last, *day.get(p, (0, 0))) for p, last in used]


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
