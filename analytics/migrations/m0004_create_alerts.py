"""Error-rate alerts: one row per alert, its latest state winning (firing, then resolved)."""

from sentinel_usage.analytics.migrations.context import MigrationContext


def forward(ctx: MigrationContext) -> list[str]:
    return [
        f"""
        CREATE TABLE IF NOT EXISTS alerts
        (
            project_id   LowCardinality(String),
            pass_id      String,
            alert_id     UUID,
            state        Enum8('firing' = 1, 'resolved' = 2),
            error_rate   Float64,
            requests     UInt64,
            errors       UInt64,
            window_start DateTime64(3, 'UTC'),
            window_end   DateTime64(3, 'UTC'),
            fired_at     DateTime64(3, 'UTC'),
            resolved_at  Nullable(DateTime64(3, 'UTC')),
            -- ReplacingMergeTree needs an integer version: resolved (2) outranks firing (1)
            state_rank   UInt8 DEFAULT CAST(state, 'UInt8')
        )
        ENGINE = ReplacingMergeTree(state_rank)
        PARTITION BY toYYYYMM(fired_at)
        ORDER BY (project_id, pass_id, alert_id)
        TTL toDateTime(fired_at) + INTERVAL {ctx.retention_days} DAY
        """
    ]


def backward(ctx: MigrationContext) -> list[str]:
    return ["DROP TABLE IF EXISTS alerts"]
