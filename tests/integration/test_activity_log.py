"""ActivityLogWriter and ActivityLogQuery against the real ClickHouse engine."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sentinel_usage.analytics.activity import ActivityLogQuery
from sentinel_usage.analytics.scope import ProjectScope
from sentinel_usage.analytics.writer import ActivityLogWriter
from sentinel_usage.core.events import EventValidator, UsageEvent
from tests.factories import raw_event

VALIDATOR = EventValidator()


def clickhouse_uuid_order(value: uuid.UUID) -> tuple[int, int]:
    """ClickHouse compares UUIDs by their second 64-bit half first."""
    return value.int & (2**64 - 1), value.int >> 64


def events_for(pass_id: str, project: str, n: int, base: datetime) -> list[UsageEvent]:
    return [
        VALIDATOR.validate(
            raw_event(
                project_id=project,
                pass_id=pass_id,
                started_at=(base - timedelta(seconds=i // 2)).isoformat(),  # pairs share a time
                status_code=500 if i % 7 == 0 else 200,
                error_message="boom" if i % 7 == 0 else None,
                user_agent=None if i % 3 else "agent/2",
            )
        )
        for i in range(n)
    ]


def test_redelivered_events_appear_once_newest_first(clickhouse: Any) -> None:
    pass_id = f"SP-{uuid.uuid4().hex[:8]}"
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    events = events_for(pass_id, "proj-a", 57, base)
    writer = ActivityLogWriter(clickhouse)
    writer.write(events)
    writer.write(events[10:40])  # a redelivered batch
    writer.write(list(reversed(events[:5])))

    query = ActivityLogQuery(clickhouse)
    scope = ProjectScope("proj-a")
    expected = sorted(
        events, key=lambda e: (e.started_at, clickhouse_uuid_order(e.event_id)), reverse=True
    )
    seen = []
    for page in (1, 2, 3):
        result = query.page(scope, pass_id, page, 25)
        assert result.total == 57
        seen += result.items
    assert [row["event_id"] for row in seen] == [e.event_id for e in expected]

    first, source = seen[0], expected[0]
    assert first["started_at"] == source.started_at
    assert first["status_code"] == source.status_code
    assert first["success"] is source.success
    assert first["metadata"] == {"region": "eu"}
    assert first["client_ip"] == "203.0.113.7"
    assert {row["user_agent"] for row in seen} == {None, "agent/2"}


def test_another_project_sees_nothing_of_the_pass(clickhouse: Any) -> None:
    pass_id = f"SP-{uuid.uuid4().hex[:8]}"
    ActivityLogWriter(clickhouse).write(events_for(pass_id, "proj-a", 3, datetime.now(UTC)))
    query = ActivityLogQuery(clickhouse)
    assert query.pass_exists(ProjectScope("proj-a"), pass_id)
    assert not query.pass_exists(ProjectScope("proj-b"), pass_id)
    assert query.page(ProjectScope("proj-b"), pass_id, 1, 25).total == 0


def test_a_scope_cannot_be_empty() -> None:
    with pytest.raises(ValueError, match="needs a project_id"):
        ProjectScope("")
