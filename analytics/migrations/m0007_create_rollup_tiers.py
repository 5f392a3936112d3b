"""The coarser rollup tiers beside `usage_rollups` (core/windows.py): 15-minute windows
and UTC days, each with its own retention, each row a window's whole state as in
`usage_rollups` (so rewriting one stays idempotent, and nothing sums rewritten rows).

Filled here from the rollups already held: a tier window is the merge of the finer
windows it contains. Its watermark is the highest source offset among them (a pass's
records all come from one partition, so every record up to it was applied to one of
them), in the broker life of the window written last.

The views' `SELECT *` is expanded when they are created: a later migration that adds a
rollup column adds it to every tier's table and to `usage_rollup_writes`, then creates the
views again.
"""

from sentinel_usage.analytics.migrations.context import MigrationContext

_TIERS = {"usage_rollups_15m": 900, "usage_rollups_1d": 86_400}

_SUMMED = (
    "sum(total_requests), sum(success_count), sum(error_count), sum(token_generations), "
    "sum(token_failures), sum(latency_sum_ms), sum(latency_count), max(latency_max_ms), "
    "sum(sketch_zero_count), sumMap(sketch), sumMap(endpoint_counts), max(last_event_at)"
)


def _create(table: str, days: int) -> str:
    # The columns of usage_rollups as they are now (source_epoch included), its engine.
    return f"""
        CREATE TABLE IF NOT EXISTS {table} AS usage_rollups
        ENGINE = ReplacingMergeTree(version)
        PARTITION BY toYYYYMM(window_start)
        ORDER BY (project_id, pass_id, window_start)
        TTL toDateTime(window_start) + INTERVAL {days} DAY
        """


# A context that keeps every tier 400 days: the benches fill the minute tier with a month
# of windows and the coarser ones from it, which the default 3-day TTL would race.
FILLING = MigrationContext(rollup_retention_days=dict.fromkeys(("usage_rollups", *_TIERS), 400))


def fill_from_finest(table: str, seconds: int) -> str:
    """The statement that fills `table` (windows of `seconds`) from `usage_rollups`
    (the benches fill their tiers with it too, as an upgrade does)."""
    step = seconds * 1000
    return f"""
        INSERT INTO {table}
            (project_id, pass_id, window_start, window_seconds, version, total_requests,
             success_count, error_count, token_generations, token_failures, latency_sum_ms,
             latency_count, latency_max_ms, sketch_zero_count, sketch, endpoint_counts,
             last_event_at, source_partition, last_offset, source_epoch)
        SELECT project_id, pass_id,
               fromUnixTimestamp64Milli(
                   intDiv(toUnixTimestamp64Milli(window_start), {step}) * {step}, 'UTC'
               ) AS tier_start,
               {seconds}, max(version), {_SUMMED},
               argMax(source_partition, updated_at), max(last_offset),
               argMax(source_epoch, updated_at)
        FROM usage_rollups FINAL
        GROUP BY project_id, pass_id, tier_start
        """


# The worker writes every tier's windows in one insert, into a table that keeps nothing
# (Null), from which one materialized view a tier takes its own: chDB spent ~25 ms on
# each insert whatever its size, and three inserts a batch cost the stream a quarter of
# its throughput. A window shorter than a quarter of an hour is the finest tier's.
_ROUTES = {
    "usage_rollups": "window_seconds < 900",
    "usage_rollups_15m": "window_seconds = 900",
    "usage_rollups_1d": "window_seconds = 86400",
}


def forward(ctx: MigrationContext) -> list[str]:
    statements = []
    for table, seconds in _TIERS.items():
        statements += [
            _create(table, ctx.rollup_retention_days.get(table, ctx.retention_days)),
            fill_from_finest(table, seconds),
        ]
    statements.append(
        "CREATE TABLE IF NOT EXISTS usage_rollup_writes AS usage_rollups ENGINE = Null"
    )
    for table, route in _ROUTES.items():
        statements.append(
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {table}_route TO {table} "
            f"AS SELECT * FROM usage_rollup_writes WHERE {route}"
        )
    return statements


def backward(ctx: MigrationContext) -> list[str]:
    views = [f"DROP VIEW IF EXISTS {table}_route" for table in _ROUTES]
    tables = [f"DROP TABLE IF EXISTS {table}" for table in ("usage_rollup_writes", *_TIERS)]
    return views + tables
