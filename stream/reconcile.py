"""Rebuilding, from the raw log, the window rollups an embedded restart left short.

Runs once at the start of an embedded worker, before it consumes (the windows it
then loads from the rollups are whole again): see analytics/reconcile.py for why.
The rebuild is the sink's own aggregation (UsageWindows) over the window's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pyarrow as pa
import structlog

from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.analytics.reconcile import RawWindows
from sentinel_usage.analytics.rollups import RollupStore
from sentinel_usage.core.windows import EPOCH, RollupTier
from sentinel_usage.stream.windows import fresh_windows

log = structlog.get_logger(__name__)

# Rows are inserted just before their rollups; a batch's two writes are far
# closer together than this, so every row without its rollup was ingested after
# (the last rollup write - MARGIN).
MARGIN = timedelta(minutes=1)
# The rebuilt state's source: no broker's life, so a worker never compares its offsets.
REBUILT_EPOCH = "raw-log"


def rebuild_lost_windows(clickhouse: ClickHouse, tiers: Sequence[RollupTier]) -> int:
    """Rewrite every recently touched window, of every tier, whose rollup disagrees with
    the raw log; return how many were rewritten."""
    return sum(_rebuild_tier(clickhouse, tier, tiers) for tier in tiers)


def _rebuild_tier(clickhouse: ClickHouse, tier: RollupTier, tiers: Sequence[RollupTier]) -> int:
    raw = RawWindows(clickhouse, tier)
    last = raw.last_rollup_write()
    since = last - MARGIN if last is not None else EPOCH
    keys = raw.mismatched(since)
    if not keys:
        return 0
    rows = raw.rows(keys)
    rows = rows.append_column(
        "source_partition", pa.array([-1] * rows.num_rows, pa.int32())
    ).append_column("source_offset", pa.array([0] * rows.num_rows, pa.int64()))
    rebuilt = fresh_windows(rows, tier.seconds, REBUILT_EPOCH)
    RollupStore(clickhouse, tiers).write(rebuilt)
    log.warning(
        "rollups_rebuilt_from_raw_log",
        table=tier.table,
        windows=len(rebuilt),
        since=since.isoformat(),
    )
    return len(rebuilt)
