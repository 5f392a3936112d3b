"""The endpoint breakdown of one pass over a range: per route template, requests,
errors and latency; and the status codes. Read from the deduplicated raw log
(FINAL), always within a ProjectScope: counts are exact, latencies come from the
same logarithmic sketch keys as the rollups' (core/sketch.py), so within 1%."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.analytics.scope import ProjectScope, ScopedQuery
from sentinel_usage.core.aggregate import REQUEST_TYPES
from sentinel_usage.core.sketch import KEYS_PER_DOUBLING, MIN_INDEXABLE_MS, LatencySketch

# log2(v) * KEYS_PER_DOUBLING, the sketch's key, as ClickHouse computes it. Its log may
# differ from C's by an ulp at a bucket's very boundary: a value then lands in the next
# bucket, still within the 1% the sketch keeps half of.
_SKETCH: Final = (
    "sumMapIf(map(toInt64(ceil(log2(duration_ms) * {keys_per_doubling:Float64})), "
    "toUInt64(1)), duration_ms >= {min_ms:Float64})"
)
TOP_CODES: Final = 5


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
        query = _requests(scope, pass_id, start, end)
        rows = self._clickhouse.select(
            query,
            "endpoint, count() AS requests, countIf(NOT success), sum(duration_ms), "
            f"countIf(duration_ms < {{min_ms:Float64}}), {_SKETCH}",
            "GROUP BY endpoint ORDER BY requests DESC, endpoint "
            "LIMIT {limit:UInt32} OFFSET {offset:UInt64}",
            keys_per_doubling=KEYS_PER_DOUBLING,
            min_ms=MIN_INDEXABLE_MS,
            limit=limit,
            offset=offset,
        )
        ((total,),) = self._clickhouse.select(query, "uniqExact(endpoint)")
        codes = self._clickhouse.select(query, "status_code, count()", "GROUP BY status_code")
        return EndpointPage([_usage(row) for row in rows], int(total), dict(codes))


def _requests(scope: ProjectScope, pass_id: str, start: datetime, end: datetime) -> ScopedQuery:
    return scope.on("activity_log", pass_id).where(
        "started_at >= {start:DateTime64(3, 'UTC')} AND started_at < {end:DateTime64(3, 'UTC')} "
        "AND activity_type IN {requests:Array(String)}",
        start=start,
        end=end,
        requests=sorted(REQUEST_TYPES),
    )


def _usage(row: tuple[Any, ...]) -> EndpointUsage:
    endpoint, requests, errors, latency_sum, zeros, sketch = row
    bins = {int(k): int(v) for k, v in sketch.items()}
    return EndpointUsage(
        str(endpoint), int(requests), int(errors), float(latency_sum),
        LatencySketch(bins, int(zeros)),
    )  # fmt: skip
