"""An index of the activity log by (project_id, event_id), for the identity rule: within
a project an event_id is one event for the whole retention, whatever its other fields.

A projection lives in the same parts as the rows it indexes, so it can never lag
them, not even across a crash mid-insert (a separate table fed by a materialized
view could). ReplacingMergeTree accepts projections with
deduplicate_merge_projection_mode = 'rebuild': merges rebuild them. The sink looks
up only what its Bloom filter cannot rule out (core/idfilter.py).
"""

from sentinel_usage.analytics.migrations.context import MigrationContext


def forward(ctx: MigrationContext) -> list[str]:
    return [
        "ALTER TABLE activity_log MODIFY SETTING deduplicate_merge_projection_mode = 'rebuild'",
        "ALTER TABLE activity_log ADD PROJECTION IF NOT EXISTS by_event_id "
        "(SELECT project_id, event_id ORDER BY project_id, event_id)",
        "ALTER TABLE activity_log MATERIALIZE PROJECTION by_event_id SETTINGS mutations_sync = 1",
    ]


def backward(ctx: MigrationContext) -> list[str]:
    return ["ALTER TABLE activity_log DROP PROJECTION IF EXISTS by_event_id"]
