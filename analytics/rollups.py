"""RollupStore: window states in and out of the `usage_rollups` table."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.core.aggregate import UsageAggregate, WindowKey, WindowState
from sentinel_usage.core.sketch import LatencySketch

COLUMNS: Final = (
    "project_id",
    "pass_id",
    "window_start",
    "window_seconds",
    "version",
    "total_requests",
    "success_count",
    "error_count",
    "token_generations",
    "token_failures",
    "latency_sum_ms",
    "latency_count",
    "latency_max_ms",
    "sketch_zero_count",
    "sketch",
    "endpoint_counts",
    "last_event_at",
    "source_partition",
    "last_offset",
    "source_epoch",
)
_LOAD_COLUMNS: Final = ", ".join(c for c in COLUMNS if c != "version")


class RollupStore:
    """Blocking (run in a thread). Raises DependencyUnavailableError when ClickHouse
    cannot be reached and StorageError when it refuses (both: retry). Writing a state
    again is idempotent (the newest version wins)."""

    def __init__(self, clickhouse: ClickHouse) -> None:
        self._clickhouse = clickhouse

    def write(self, states: Sequence[WindowState]) -> int:
        if not states:
            return 0
        version = time.time_ns()
        rows = []
        for s in states:
            a = s.aggregate
            rows.append(
                [
                    s.project_id,
                    s.pass_id,
                    s.window_start,
                    s.window_seconds,
                    version,
                    a.total_requests,
                    a.success_count,
                    a.error_count,
                    a.token_generations,
                    a.token_failures,
                    a.latency_sum_ms,
                    a.latency_count,
                    a.latency_max_ms,
                    a.sketch.zero_count,
                    a.sketch.bins,
                    a.endpoint_counts,
                    a.last_event_at,
                    s.source_partition,
                    s.last_offset,
                    s.source_epoch,
                ]
            )
        self._clickhouse.insert("usage_rollups", rows, COLUMNS)
        return len(rows)

    def load(self, keys: Sequence[WindowKey]) -> dict[WindowKey, WindowState]:
        """The stored states of `keys` (those that exist)."""
        if not keys:
            return {}
        rows = self._clickhouse.unscoped_rows(
            f"SELECT {_LOAD_COLUMNS} FROM usage_rollups FINAL "
            "WHERE (project_id, pass_id, window_start) IN "
            "{keys:Array(Tuple(String, String, DateTime64(3, 'UTC')))}",
            {"keys": [tuple(k) for k in keys]},
            what="rollup query",
        )
        states = [_state(row) for row in rows]
        return {s.key: s for s in states}


def _state(row: Sequence[Any]) -> WindowState:
    (project_id, pass_id, window_start, window_seconds, tr, sc, ec, tg, tf, ls, lc, lm, sz,
     sketch, endpoints, last_event_at, partition, offset, epoch) = row  # fmt: skip
    aggregate = UsageAggregate(
        total_requests=tr,
        success_count=sc,
        error_count=ec,
        token_generations=tg,
        token_failures=tf,
        latency_sum_ms=ls,
        latency_count=lc,
        latency_max_ms=lm,
        sketch=LatencySketch(dict(sketch), sz),
        endpoint_counts=dict(endpoints),
        last_event_at=last_event_at,
    )
    return WindowState(
        project_id,
        pass_id,
        window_start,
        window_seconds,
        aggregate,
        partition,
        offset,
        epoch,
    )
