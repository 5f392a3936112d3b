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

from sentinel_usage.analytics.clickhouse import UNAVAILABLE_ERRORS
from sentinel_usage.analytics.scope import ProjectScope
from sentinel_usage.core.aggregate import UsageAggregate
from sentinel_usage.core.errors import DependencyUnavailableError
from sentinel_usage.core.events import event_time
from sentinel_usage.core.sketch import LatencySketch


class UsageRange(StrEnum):
    DAY = "24h"
    WEEK = "7d"
    MONTH = "30d"

    @property
    def granularity(self) -> str:
        return "hour" if self is UsageRange.DAY else "day"

    @property
    def buckets(self) -> int:
        return {UsageRange.DAY: 24, UsageRange.WEEK: 7, UsageRange.MONTH: 30}[self]


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
    """Blocking: call from a thread in async code."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def usage(
        self, scope: ProjectScope, pass_id: str, rng: UsageRange, zone: ZoneInfo, now: datetime
    ) -> UsageReport:
        buckets = bucket_bounds(rng, zone, now)
        where, params = scope.where(pass_id)
        rows = self._query(
            "SELECT arrayCount(s -> s <= window_start, {starts:Array(DateTime64(3, 'UTC'))}) "
            f"AS bucket, {_SUMS} FROM usage_rollups FINAL WHERE {where} "
            "AND window_start >= {start:DateTime64(3, 'UTC')} "
            "AND window_start < {end:DateTime64(3, 'UTC')} GROUP BY bucket",
            {
                **params,
                "starts": [b.start for b in buckets],
                "start": buckets[0].start,
                "end": buckets[-1].end,
            },
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
        where, params = scope.where(pass_id)
        (row,) = self._query(
            "SELECT sum(total_requests), sum(success_count), sum(latency_sum_ms), "
            f"sum(latency_count), max(last_event_at) FROM usage_rollups FINAL WHERE {where}",
            params,
        )
        return PassOverview(
            int(row[0]), int(row[1]), float(row[2]), int(row[3]), _maybe_time(row[4])
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
        where, scope_params = scope.where()
        params: dict[str, Any] = dict(scope_params)
        if pass_ids is not None:
            where += " AND pass_id IN {pass_ids:Array(String)}"
            params["pass_ids"] = list(pass_ids)
        rows = self._query(
            "SELECT pass_id, max(last_event_at) AS last_used, "
            "sumIf(total_requests, window_start >= {since:DateTime64(3, 'UTC')}), "
            "sumIf(error_count, window_start >= {since:DateTime64(3, 'UTC')}) "
            f"FROM usage_rollups FINAL WHERE {where} "
            "GROUP BY pass_id ORDER BY last_used DESC, pass_id"
            + (" LIMIT {limit:UInt32}" if limit is not None else ""),
            {**params, "since": now - timedelta(hours=24), "limit": limit},
        )
        return [PassSummary(r[0], _maybe_time(r[1]), int(r[2]), int(r[3])) for r in rows]

    def _query(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        try:
            return list(self._client.query(sql, parameters=params).result_rows)
        except UNAVAILABLE_ERRORS as exc:
            raise DependencyUnavailableError(f"ClickHouse query failed: {exc}") from exc


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
        last_event_at=_maybe_time(last),
    )


def _maybe_time(value: datetime | None) -> datetime | None:
    return event_time(value) if value is not None else None
