"""An embedded restart loses the windows' changelog with the broker: rows inserted
whose rollup write never happened (a kill between the two) are counted again by
rebuilding their windows from the raw log, on the real ClickHouse engine."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sentinel_usage.analytics.rollups import RollupStore
from sentinel_usage.analytics.writer import ActivityLogWriter
from sentinel_usage.core.aggregate import UsageAggregate, WindowKey
from sentinel_usage.core.columns import validate_events
from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.windows import DEFAULT_TIERS
from sentinel_usage.stream.reconcile import rebuild_lost_windows
from tests.workload import assert_matches_log, expected_counts, generate


def stored_total(clickhouse: Any, project: str) -> UsageAggregate:
    """Every rollup of `project`, merged (read the way the usage query reads them)."""
    rows = clickhouse.unscoped_rows(
        "SELECT pass_id, window_start FROM usage_rollups FINAL WHERE project_id = {p:String}",
        {"p": project},
        what="test",
    )
    keys = [WindowKey(project, pass_id, start, 60) for pass_id, start in rows]
    total = UsageAggregate()
    for state in RollupStore(clickhouse).load(keys).values():
        total = total.merge(state.aggregate)
    return total


def test_windows_whose_rollup_write_was_lost_are_rebuilt_exactly(clickhouse: Any) -> None:
    project = f"proj-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    workload = generate(project, ["SP-A", "SP-B"], 3000, now, timedelta(hours=3), resend_share=0)
    table = validate_events(workload.unique, EventValidator()).table
    first, second = table.slice(0, 2000), table.slice(2000)

    # A previous life: the first rows and their rollups written...
    ActivityLogWriter(clickhouse).write(first)
    assert rebuild_lost_windows(clickhouse, DEFAULT_TIERS) > 0  # (no rollups yet: all rebuilt)
    counted = stored_total(clickhouse, project)
    assert counted.total_requests + counted.token_generations == 2000
    # ...then a batch whose rows went in and whose rollups did not: the kill.
    ActivityLogWriter(clickhouse).write(second)
    assert stored_total(clickhouse, project).total_requests == counted.total_requests

    rebuilt = rebuild_lost_windows(clickhouse, DEFAULT_TIERS)

    assert rebuilt > 0
    want = expected_counts(workload.unique, now - timedelta(days=1), now + timedelta(days=1))
    assert_matches_log(stored_total(clickhouse, project), want)
    # consistent now: a second start finds nothing to do
    assert rebuild_lost_windows(clickhouse, DEFAULT_TIERS) == 0
