"""The raw activity log: one row per event, deduplicated by (project, pass, time, event_id).

ReplacingMergeTree folds redelivered copies of an event during merges; until
then, readers select with FINAL, so an event appears once in every query.
The dedup key is scoped by tenant (project_id, pass_id) before event_id.
"""

from sentinel_usage.analytics.migrations.context import MigrationContext


def forward(ctx: MigrationContext) -> list[str]:
    return [
        f"""
        CREATE TABLE IF NOT EXISTS activity_log
        (
            project_id    LowCardinality(String),
            pass_id       String,
            started_at    DateTime64(3, 'UTC'),
            event_id      UUID,
            client_id     LowCardinality(String),
            activity_type Enum8('api_request' = 1, 'token_generation' = 2, 'error' = 3),
            endpoint      LowCardinality(String),
            http_method   LowCardinality(String),
            status_code   Nullable(UInt16),
            success       Bool,
            duration_ms   Float64,
            client_ip     String,
            user_agent    String,
            error_message String,
            metadata      String,
            ingested_at   DateTime64(3, 'UTC') DEFAULT now64(3)
        )
        ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(started_at)
        ORDER BY (project_id, pass_id, started_at, event_id)
        TTL toDateTime(started_at) + INTERVAL {ctx.retention_days} DAY
        SETTINGS non_replicated_deduplication_window = 1000
        """
    ]


def backward(ctx: MigrationContext) -> list[str]:
    return ["DROP TABLE IF EXISTS activity_log"]
