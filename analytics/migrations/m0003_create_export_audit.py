"""The audit trail of exports: who exported which pass, with which filters, how many rows."""

from sentinel_usage.analytics.migrations.context import MigrationContext


def forward(ctx: MigrationContext) -> list[str]:
    return [
        """
        CREATE TABLE IF NOT EXISTS export_audit
        (
            export_id     UUID,
            project_id    LowCardinality(String),
            pass_id       String,
            subject       String,
            format        LowCardinality(String),
            filters       String,
            cursor        String,
            row_count     UInt32,
            total_count   UInt64,
            truncated     Bool,
            next_cursor   String,
            snapshot      DateTime64(3, 'UTC'),
            requested_at  DateTime64(3, 'UTC')
        )
        ENGINE = ReplacingMergeTree
        ORDER BY (project_id, requested_at, export_id)
        """
    ]


def backward(ctx: MigrationContext) -> list[str]:
    return ["DROP TABLE IF EXISTS export_audit"]
