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
