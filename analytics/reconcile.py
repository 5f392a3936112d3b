"""RawWindows: the activity log's view of window rollups, to find and rebuild the
windows whose rollup writes were lost.

The sink inserts a batch's rows, then the rollups of the windows it changed; the
window state that would let a replay finish the second write lives in a Kafka
changelog. The embedded broker keeps nothing across a restart, so a kill between
the two writes left rows that no rollup counted (issue 11). The raw log is the
truth: at an embedded start, every window touched by rows ingested since shortly
before the last rollup write is compared with the log, and any that differs is
rebuilt from its rows (stream/reconcile.py). Each rollup tier is checked against the
log on its own (its table, its windows, its own last write). Windows are epoch-aligned,
as in stream/windows.py: `intDiv(epoch_ms, step) * step`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import pyarrow as pa

from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.core.aggregate import WindowKey
from sentinel_usage.core.columns import EVENT_SCHEMA
from sentinel_usage.core.windows import EPOCH, RollupTier

_WINDOW_MS: Final = "intDiv(toUnixTimestamp64Milli(started_at), {step:UInt64}) * {step:UInt64}"
_TOUCHED: Final = (
    f"SELECT DISTINCT project_id, pass_id, {_WINDOW_MS} FROM activity_log "
    "WHERE ingested_at >= {since:DateTime64(3, 'UTC')}"
)
_MILLISECOND: Final = timedelta(milliseconds=1)
# What the window aggregation reads of an event (stream/windows.py), typed as it expects.
ROW_SCHEMA: Final = pa.schema(
    [EVENT_SCHEMA.field(name) for name in
     ("project_id", "pass_id", "started_at", "activity_type", "endpoint", "success",
      "duration_ms")]
)  # fmt: skip


class RawWindows:
    """Blocking; raises DependencyUnavailableError or StorageError like the writer."""

    def __init__(self, clickhouse: ClickHouse, tier: RollupTier) -> None:
        self._clickhouse = clickhouse
        self._tier = tier
        self._step = tier.seconds * 1000

    def last_rollup_write(self) -> datetime | None:
        ((latest, count),) = self._clickhouse.unscoped_rows(
            f"SELECT max(updated_at), count() FROM {self._tier.table}",
            what="rollup high-water query",
        )
        return latest if count else None

    def mismatched(self, since: datetime) -> list[WindowKey]:
        """Windows touched by rows ingested at or after `since` whose event count in
        the log differs from their rollup's (or that have no rollup)."""
        query = (
            "SELECT r.project_id, r.pass_id, r.window_ms FROM ("
            f"  SELECT project_id, pass_id, {_WINDOW_MS} AS window_ms, count() AS n"
            "   FROM activity_log FINAL"
            f"  WHERE (project_id, pass_id, window_ms) IN ({_TOUCHED})"
            "   GROUP BY project_id, pass_id, window_ms"
            ") AS r LEFT JOIN ("
            "  SELECT project_id, pass_id, toUnixTimestamp64Milli(window_start) AS window_ms,"
            "         total_requests + token_generations AS n"
            f"   FROM {self._tier.table} FINAL"
            f"  WHERE (project_id, pass_id, window_ms) IN ({_TOUCHED})"
            ") AS u USING (project_id, pass_id, window_ms) "
            "WHERE r.n != u.n ORDER BY r.project_id, r.pass_id, r.window_ms"
        )
        rows = self._clickhouse.unscoped_rows(
            query, {"step": self._step, "since": since}, what="rollup reconciliation query"
        )
        seconds = self._tier.seconds
        return [WindowKey(p, s, EPOCH + timedelta(milliseconds=w), seconds) for p, s, w in rows]

    def rows(self, keys: list[WindowKey]) -> pa.Table:
        """Every event of the windows `keys` (deduplicated: FINAL), as ROW_SCHEMA."""
        if not keys:
            return ROW_SCHEMA.empty_table()
        windows = [(k.project_id, k.pass_id, (k.window_start - EPOCH) // _MILLISECOND)
                   for k in keys]  # fmt: skip
        table = self._clickhouse.arrow(
            "SELECT project_id, pass_id, started_at, toString(activity_type) AS activity_type,"
            " endpoint, success, duration_ms FROM activity_log FINAL "
            f"WHERE (project_id, pass_id, {_WINDOW_MS}) IN "
            "{windows:Array(Tuple(String, String, UInt64))}",
            {"step": self._step, "windows": windows},
            what="rollup reconciliation rows",
        )
        return pa.table(
            {field.name: table.column(field.name).cast(field.type) for field in ROW_SCHEMA},
            schema=ROW_SCHEMA,
        )
