from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from sentinel_usage.analytics.clickhouse import ClickHouse, connect
from sentinel_usage.analytics.migrate import discover, migrate, pending, rollback
from sentinel_usage.analytics.migrations.context import MigrationContext


@pytest.fixture
def empty_db(clickhouse_dsn: str) -> Iterator[Any]:
    name = f"mig_{uuid.uuid4().hex[:10]}"
    connect(clickhouse_dsn).command(f"CREATE DATABASE {name}")
    yield connect(clickhouse_dsn, database=name)
    connect(clickhouse_dsn).command(f"DROP DATABASE {name} SYNC")


def tables(client: Any) -> set[str]:
    return {r[0] for r in rows(client, "SHOW TABLES")}


def rows(clickhouse: ClickHouse, sql: str) -> list[tuple[Any, ...]]:
    return clickhouse.unscoped_rows(sql, what="test")


def test_migrations_apply_once_are_recorded_and_roll_back(empty_db: Any) -> None:
    ctx = MigrationContext()
    names = [f"{m.id:04d}_{m.name}" for m in discover()]
    assert migrate(empty_db, ctx) == names
    assert migrate(empty_db, ctx) == []  # idempotent
    assert pending(empty_db) == []
    assert {"activity_log", "schema_migrations"} <= tables(empty_db)
    recorded = rows(empty_db, "SELECT id, name FROM schema_migrations FINAL ORDER BY id")
    assert [f"{i:04d}_{n}" for i, n in recorded] == names

    assert rollback(empty_db, ctx, to=0) == list(reversed(names))
    assert "activity_log" not in tables(empty_db)
    assert [m.id for m in pending(empty_db)] == [m.id for m in discover()]


def test_activity_log_schema(empty_db: Any) -> None:
    migrate(empty_db, MigrationContext(retention_days=90))
    (row,) = rows(
        empty_db,
        "SELECT sorting_key, engine, engine_full FROM system.tables "
        "WHERE database = currentDatabase() AND name = 'activity_log'",
    )
    sorting_key, engine, engine_full = row
    assert sorting_key == "project_id, pass_id, started_at, event_id"
    assert engine == "ReplacingMergeTree"
    assert "toIntervalDay(90)" in engine_full
    types = dict(
        rows(
            empty_db,
            "SELECT name, type FROM system.columns "
            "WHERE database = currentDatabase() AND table = 'activity_log'",
        )
    )
    assert types["started_at"] == "DateTime64(3, 'UTC')"
    assert types["project_id"] == "LowCardinality(String)"


def test_a_changed_retention_is_applied_to_the_existing_table(empty_db: Any) -> None:
    migrate(empty_db, MigrationContext(retention_days=90))
    migrate(empty_db, MigrationContext(retention_days=30))
    ((engine_full,),) = rows(
        empty_db,
        "SELECT engine_full FROM system.tables "
        "WHERE database = currentDatabase() AND name = 'activity_log'",
    )
    assert "toIntervalDay(30)" in engine_full


def test_each_rollup_tier_keeps_its_own_retention(empty_db: Any) -> None:
    migrate(empty_db, MigrationContext())
    migrate(empty_db, MigrationContext(rollup_retention_days={"usage_rollups_1d": 30}))
    engines = dict(
        rows(
            empty_db,
            "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase() "
            "AND name LIKE 'usage_rollups%'",
        )
    )
    assert "toIntervalDay(3)" in engines["usage_rollups"]
    assert "toIntervalDay(90)" in engines["usage_rollups_15m"]
    assert "toIntervalDay(30)" in engines["usage_rollups_1d"]


def test_the_coarser_tiers_are_filled_from_the_minutes_held_at_the_upgrade(
    empty_db: Any,
) -> None:
    from datetime import UTC, datetime, timedelta

    from sentinel_usage.analytics.rollups import RollupStore
    from sentinel_usage.core.aggregate import WindowKey, WindowState

    migrate(empty_db, MigrationContext())
    start = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    minutes = []
    for i in range(40):  # 10:00 to 10:39: three quarter hours, one day
        state = WindowState("p", "SP-1", start + timedelta(minutes=i), 60, last_offset=i)
        state.aggregate.total_requests = state.aggregate.success_count = 2
        state.aggregate.sketch.bins.update({100 + i % 3: 2})
        state.aggregate.endpoint_counts = {"/v1/items": 2}
        minutes.append(state)
    RollupStore(empty_db).write(minutes)
    rollback(empty_db, MigrationContext(), to=6)  # as before the tiers, minutes held
    assert "usage_rollups_1d" not in tables(empty_db)

    migrate(empty_db, MigrationContext())

    keys = [WindowKey("p", "SP-1", start + timedelta(minutes=15 * q), 900) for q in range(3)]
    day = WindowKey("p", "SP-1", start.replace(hour=0), 86_400)
    loaded = RollupStore(empty_db).load([*keys, day])
    assert [loaded[k].aggregate.total_requests for k in keys] == [30, 30, 20]
    assert [loaded[k].last_offset for k in keys] == [14, 29, 39]
    assert loaded[day].aggregate.total_requests == 80
    assert loaded[day].aggregate.sketch.bins == {100: 28, 101: 26, 102: 26}
    assert loaded[day].aggregate.endpoint_counts == {"/v1/items": 80}


def test_the_rollup_is_filled_from_the_raw_log_held_at_the_upgrade(
    empty_db: Any,
) -> None:
    from datetime import UTC, datetime, timedelta

    from sentinel_usage.analytics.writer import ActivityLogWriter
    from sentinel_usage.core.events import EventValidator
    from tests.factories import raw_event

    project = "proj-upgrade"

    migrate(empty_db, MigrationContext())
    rollback(empty_db, MigrationContext(), to=7)  # as before the rollup
    now = datetime.now(UTC)
    validator = EventValidator()
    events = [
        validator.validate(
            raw_event(
                project_id=project,
                pass_id="SP-UPGRADE",
                started_at=(now - timedelta(minutes=7 * i)).isoformat(),
                status_code=500 if i % 10 == 0 else 200,
            )
        )
        for i in range(100)
    ]
    ActivityLogWriter(empty_db).write(events)
    ActivityLogWriter(empty_db).write(events)  # a copy the log folds at merges
    migrate(empty_db, MigrationContext())
    ((requests, errors),) = empty_db.unscoped_rows(
        "SELECT sum(requests), sum(errors) FROM endpoint_rollups", what="test"
    )
    assert (requests, errors) == (100, 10)
