"""The broker's life a window's `last_offset` belongs to (see core/aggregate.WindowState).

The embedded broker starts from offset 0 at every start; a watermark of an earlier
life is not comparable and is ignored. Existing rows get '' (an external broker's
offsets, which keep their meaning).
"""

from sentinel_usage.analytics.migrations.context import MigrationContext


def forward(ctx: MigrationContext) -> list[str]:
    return [
        "ALTER TABLE usage_rollups ADD COLUMN IF NOT EXISTS source_epoch String DEFAULT '' "
        "AFTER last_offset"
    ]


def backward(ctx: MigrationContext) -> list[str]:
    return ["ALTER TABLE usage_rollups DROP COLUMN IF EXISTS source_epoch"]
