"""The endpoint breakdown of one pass over a range: per route template, requests,
errors and latency; and the status codes. The range's whole UTC hours are read from
`endpoint_rollups` (migration 0008), its edges finer than an hour from the deduplicated
raw log (FINAL); always within a ProjectScope. Counts are exact, latencies come from the
same logarithmic sketch keys as the usage rollups' (core/sketch.py), so within 1%."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.analytics.scope import ProjectScope
from sentinel_usage.core.aggregate import REQUEST_TYPES
from sentinel_usage.core.sketch import KEYS_PER_DOUBLING, MIN_INDEXABLE_MS, LatencySketch
from sentinel_usage.core.windows import window_ceil, window_start

# log2(v) * KEYS_PER_DOUBLING, the sketch's key, as ClickHouse computes it. Its log may
# differ from C's by an ulp at a bucket's very boundary: a value then lands in the next
# bucket, still within the 1% the sketch keeps half of.
_SKETCH: Final = (
    "sumMapIf(map(toInt64(ceil(log2(duration_ms) * {keys_per_doubling:Float64})), "
    "toUInt64(1)), duration_ms >= {min_ms:Float64})"
)
TOP_CODES: Final = 5
HOUR: Final = timedelta(hours=1)


@dataclass(frozen=True)
class EndpointUsage:
    endpoint: str
    total_requests: int
    error_count: int
    latency_sum_ms: float
    sketch: LatencySketch

    @property
    def error_rate(self) -> float:
        return self.error_count / self.total_requests

    @property
    def avg_latency_ms(self) -> float:
        return self.latency_sum_ms / self.total_requests

    @property
    def p95_latency_ms(self) -> float | None:
        return self.sketch.quantile(0.95)


@dataclass(frozen=True)
class EndpointPage:
    items: list[EndpointUsage]
    total: int  # endpoints with requests in the range
    status_codes: dict[int | None, int]  # every status code seen (None: none given)

    def status_classes(self) -> dict[str, int]:
        """Requests by class: 1xx … 5xx, and `none` for requests without a status."""
        classes: Counter[str] = Counter()
        for code, count in self.status_codes.items():
            classes["none" if code is None else f"{code // 100}xx"] += count
        return dict(sorted(classes.items()))

    def top_codes(self) -> list[tuple[int, int]]:
        """The TOP_CODES most frequent status codes, most frequent first."""
        codes = [(code, n) for code, n in self.status_codes.items() if code is not None]
        return sorted(codes, key=lambda item: (-item[1], item[0]))[:TOP_CODES]


class EndpointQuery:
    """Blocking: async code calls it through analytics/facade.py."""

    def __init__(self, clickhouse: ClickHouse) -> None:
        self._clickhouse = clickhouse

    def endpoints(
        self,
        scope: ProjectScope,
        pass_id: str,
        start: datetime,
        end: datetime,
        limit: int,
        offset: int,
    ) -> EndpointPage:
        """The pass's endpoints with requests in [start, end), most requested first."""
        first, last = window_ceil(start, HOUR), window_start(end, HOUR)
        if first < last:  # whole hours from the rollup, the edges from the log
            rows = self._raw(scope, pass_id, start, first) + self._raw(scope, pass_id, last, end)
            rows += self._clickhouse.select(
                scope.on("endpoint_rollups", pass_id, final=False).where(
                    "hour >= {first:DateTime('UTC')} AND hour < {last:DateTime('UTC')}",
                    first=first,
                    last=last,
                ),
                "endpoint, status_code, sum(requests), sum(errors), sum(latency_sum_ms), "
                "sum(sketch_zero_count), sumMap(sketch)",
                "GROUP BY endpoint, status_code",
            )
        else:
            rows = self._raw(scope, pass_id, start, end)
        return _page(rows, limit, offset)

    def _raw(
        self, scope: ProjectScope, pass_id: str, start: datetime, end: datetime
    ) -> list[tuple[Any, ...]]:
        """The rollup's columns for [start, end), from the raw log."""
        if start >= end:
            return []
        query = scope.on("activity_log", pass_id).where(
            "started_at >= {start:DateTime64(3, 'UTC')} "
            "AND started_at < {end:DateTime64(3, 'UTC')} "
            "AND activity_type IN {requests:Array(String)}",
            start=start,
            end=end,
            requests=sorted(REQUEST_TYPES),
        )
        return list(
            self._clickhouse.select(
                query,
                "endpoint, ifNull(status_code, 0) AS code, count(), countIf(NOT success), "
                f"sum(duration_ms), countIf(duration_ms < {{min_ms:Float64}}), {_SKETCH}",
                "GROUP BY endpoint, code",
                keys_per_doubling=KEYS_PER_DOUBLING,
                min_ms=MIN_INDEXABLE_MS,
            )
        )


def _page(rows: list[tuple[Any, ...]], limit: int, offset: int) -> EndpointPage:
    """Rows of (endpoint, status code or 0, requests, errors, latency sum, sketch zeros,
    sketch bins), several per endpoint and code, merged and paged."""
    merged: dict[str, EndpointUsage] = {}
    codes: Counter[int | None] = Counter()
    for endpoint, code, requests, errors, latency_sum, zeros, bins in rows:
        codes[int(code) or None] += int(requests)
        sketch = LatencySketch({int(k): int(v) for k, v in bins.items()}, int(zeros))
        known = merged.get(endpoint)
        if known is not None:
            requests += known.total_requests
            errors += known.error_count
            latency_sum += known.latency_sum_ms
            sketch = known.sketch.merge(sketch)
        merged[endpoint] = EndpointUsage(
            str(endpoint), int(requests), int(errors), float(latency_sum), sketch
        )
    ranked = sorted(merged.values(), key=lambda e: (-e.total_requests, e.endpoint))
    return EndpointPage(ranked[offset : offset + limit], len(ranked), dict(codes))
