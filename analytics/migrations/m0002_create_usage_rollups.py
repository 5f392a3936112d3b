"""Per-pass window rollups written by the stream worker.

One row per (project, pass, window): the window's whole state, not a delta,
so rewriting it is idempotent; ReplacingMergeTree(version) keeps the newest
and readers select with FINAL. Any range is a merge of its rows: counters
add, latency sketches add bucket-wise (sumMap), endpoint counts add.
`last_offset`/`source_partition` record the source position last applied,
so a replayed record is never applied twice (see stream/windows.py).
"""

from sentinel_usage.analytics.migrations.context import MigrationContext


def forward(ctx: MigrationContext) -> list[str]:
    return [
        f"""
        CREATE TABLE IF NOT EXISTS usage_rollups
        (
            project_id        LowCardinality(String),
            pass_id           String,
            window_start      DateTime64(3, 'UTC'),
            window_seconds    UInt32,
            version           UInt64,
            total_requests    UInt64,
            success_count     UInt64,
            error_count       UInt64,
            token_generations UInt64,
            token_failures    UInt64,
            latency_sum_ms    Float64,
            latency_count     UInt64,
            latency_max_ms    Float64,
            sketch_zero_count UInt64,
            sketch            Map(Int32, UInt64),
            endpoint_counts   Map(String, UInt64),
            last_event_at     Nullable(DateTime64(3, 'UTC')),
            source_partition  Int32,
            last_offset       Int64,
            updated_at        DateTime64(3, 'UTC') DEFAULT now64(3)
        )
        ENGINE = ReplacingMergeTree(version)
        PARTITION BY toYYYYMM(window_start)
        ORDER BY (project_id, pass_id, window_start)
        TTL toDateTime(window_start) + INTERVAL {ctx.retention_days} DAY
        """
    ]


def backward(ctx: MigrationContext) -> list[str]:
    return ["DROP TABLE IF EXISTS usage_rollups"]
