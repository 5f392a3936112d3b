"""RollupStore: window states in and out of the rollup tiers' tables (one table a tier,
core/windows.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from itertools import chain
from typing import Any, Final, TypeVar

import numpy as np
import pyarrow as pa

from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.core.aggregate import UsageAggregate, WindowKey, WindowState
from sentinel_usage.core.sketch import LatencySketch
from sentinel_usage.core.windows import DEFAULT_TIERS, ROLLUP_WRITES, RollupTier

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
T = TypeVar("T")
_TIME: Final = pa.timestamp("ms", tz="UTC")
_ARROW_SCHEMA: Final = pa.schema(
    [
        ("project_id", pa.string()),
        ("pass_id", pa.string()),
        ("window_start", _TIME),
        ("window_seconds", pa.uint32()),
        ("version", pa.uint64()),
        ("total_requests", pa.uint64()),
        ("success_count", pa.uint64()),
        ("error_count", pa.uint64()),
        ("token_generations", pa.uint64()),
        ("token_failures", pa.uint64()),
        ("latency_sum_ms", pa.float64()),
        ("latency_count", pa.uint64()),
        ("latency_max_ms", pa.float64()),
        ("sketch_zero_count", pa.uint64()),
        ("sketch", pa.map_(pa.int32(), pa.uint64())),
        ("endpoint_counts", pa.map_(pa.string(), pa.uint64())),
        ("last_event_at", _TIME),
        ("source_partition", pa.int32()),
        ("last_offset", pa.int64()),
        ("source_epoch", pa.string()),
    ]
)
assert tuple(_ARROW_SCHEMA.names) == COLUMNS
_LOAD_COLUMNS: Final = ", ".join(c for c in COLUMNS if c != "version")


class RollupStore:
    """Blocking (run in a thread). Raises DependencyUnavailableError when ClickHouse
    cannot be reached and StorageError when it refuses (both: retry). Writing a state
    again is idempotent (the newest version wins)."""

    def __init__(self, clickhouse: ClickHouse, tiers: Sequence[RollupTier] = DEFAULT_TIERS) -> None:
        self._clickhouse = clickhouse
        self._tables = {tier.seconds: tier.table for tier in tiers}

    def write(self, states: Sequence[WindowState]) -> int:
        """Write `states`, each to its tier's table, in one insert (routed by ClickHouse,
        analytics migration 0007)."""
        # A window of no tier would match no view: the insert would keep it nowhere.
        unknown = {s.window_seconds for s in states} - self._tables.keys()
        if unknown:
            raise ValueError(f"no rollup tier of {sorted(unknown)} s windows")
        if states:
            self._write(states)
        return len(states)

    def _write(self, states: Sequence[WindowState]) -> None:
        # As one Arrow block: pyarrow builds the columns in C, where the client's row
        # insert serialised them in Python; the maps from their keys and counts chained
        # (a list of (key, count) pairs a window, converted by pyarrow, was most of it).
        aggregates = [s.aggregate for s in states]
        columns: dict[str, Any] = {
            "project_id": [s.project_id for s in states],
            "pass_id": [s.pass_id for s in states],
            "window_start": [s.window_start for s in states],
            "window_seconds": [s.window_seconds for s in states],
            "version": [time.time_ns()] * len(states),
            "total_requests": [a.total_requests for a in aggregates],
            "success_count": [a.success_count for a in aggregates],
            "error_count": [a.error_count for a in aggregates],
            "token_generations": [a.token_generations for a in aggregates],
            "token_failures": [a.token_failures for a in aggregates],
            "latency_sum_ms": [a.latency_sum_ms for a in aggregates],
            "latency_count": [a.latency_count for a in aggregates],
            "latency_max_ms": [a.latency_max_ms for a in aggregates],
            "sketch_zero_count": [a.sketch.zero_count for a in aggregates],
            "sketch": _map_column([a.sketch.bins for a in aggregates], pa.int32()),
            "endpoint_counts": _map_column([a.endpoint_counts for a in aggregates], pa.string()),
            "last_event_at": [a.last_event_at for a in aggregates],
            "source_partition": [s.source_partition for s in states],
            "last_offset": [s.last_offset for s in states],
            "source_epoch": [s.source_epoch for s in states],
        }
        self._clickhouse.insert_arrow(ROLLUP_WRITES, pa.table(columns, schema=_ARROW_SCHEMA))

    def load(self, keys: Sequence[WindowKey]) -> dict[WindowKey, WindowState]:
        """The stored states of `keys` (those that exist), from their tiers' tables, in
        one query."""
        selects, parameters = [], {}
        for i, (table, tier_keys) in enumerate(
            self._by_table(keys, lambda k: k.window_seconds).items()
        ):
            selects.append(
                f"SELECT {_LOAD_COLUMNS} FROM {table} FINAL "
                "WHERE (project_id, pass_id, window_start) IN "
                f"{{keys{i}:Array(Tuple(String, String, DateTime64(3, 'UTC')))}}"
            )
            parameters[f"keys{i}"] = [k[:3] for k in tier_keys]
        if not selects:
            return {}
        rows = self._clickhouse.unscoped_rows(
            " UNION ALL ".join(selects), parameters, what="rollup query"
        )
        states = [_state(row) for row in rows]
        return {s.key: s for s in states}

    def keys_ending_from(self, since: datetime) -> list[WindowKey]:
        """The keys of every stored window, of every tier, that ends at or after `since`
        (stream/rollup_keys.py): one query, without FINAL (a key written twice is one)."""
        selects = [
            "SELECT DISTINCT project_id, pass_id, window_start, window_seconds "
            f"FROM {table} WHERE window_start >= {{since:DateTime64(3, 'UTC')}} - "
            f"INTERVAL {seconds} SECOND"
            for seconds, table in self._tables.items()
        ]
        rows = self._clickhouse.unscoped_rows(
            " UNION ALL ".join(selects), {"since": since}, what="rollup keys"
        )
        return [WindowKey(*row) for row in rows]

    def _by_table(self, items: Sequence[T], seconds: Callable[[T], int]) -> dict[str, list[T]]:
        grouped: dict[str, list[T]] = {}
        for item in items:
            try:
                table = self._tables[seconds(item)]
            except KeyError:
                raise ValueError(f"no rollup tier of {seconds(item)} s windows") from None
            grouped.setdefault(table, []).append(item)
        return grouped


def _map_column(maps: Sequence[Mapping[Any, int]], key_type: pa.DataType) -> pa.MapArray:
    """Python mappings as one Arrow map column (counts UInt64)."""
    offsets = np.zeros(len(maps) + 1, dtype=np.int32)
    np.cumsum([len(m) for m in maps], out=offsets[1:])
    keys = pa.array(list(chain.from_iterable(maps)), key_type)
    counts = pa.array(list(chain.from_iterable(m.values() for m in maps)), pa.uint64())
    return pa.MapArray.from_arrays(pa.array(offsets), keys, counts)


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
