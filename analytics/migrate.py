"""Applies the numbered migrations in `analytics/migrations`, recording each one."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import structlog

from sentinel_usage.analytics import migrations as migrations_package
from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.analytics.migrations.context import MigrationContext

log = structlog.get_logger(__name__)

_NAME = re.compile(r"^m(\d{4})_(\w+)$")

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    id         UInt32,
    name       String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY id
"""


@dataclass(frozen=True)
class Migration:
    id: int
    name: str
    forward: Callable[[MigrationContext], list[str]]
    backward: Callable[[MigrationContext], list[str]]


def discover() -> list[Migration]:
    """Every migration module, in number order; a gap or duplicate number is a bug."""
    found = []
    for info in pkgutil.iter_modules(migrations_package.__path__):
        match = _NAME.match(info.name)
        if not match:
            continue
        module: ModuleType = importlib.import_module(f"{migrations_package.__name__}.{info.name}")
        found.append(Migration(int(match[1]), match[2], module.forward, module.backward))
    found.sort(key=lambda m: m.id)
    expected = list(range(1, len(found) + 1))
    if [m.id for m in found] != expected:
        raise RuntimeError(f"migration numbers must be 1..N without gaps: {[m.id for m in found]}")
    return found


def applied_ids(client: ClickHouse) -> set[int]:
    client.command(MIGRATIONS_TABLE)
    rows = client.unscoped_rows("SELECT id FROM schema_migrations FINAL", what="migrations")
    return {row[0] for row in rows}


def pending(client: ClickHouse) -> list[Migration]:
    done = applied_ids(client)
    return [m for m in discover() if m.id not in done]


def migrate(client: ClickHouse, ctx: MigrationContext) -> list[str]:
    """Apply what is pending; return the names applied. Safe to run concurrently and again."""
    applied = []
    for migration in pending(client):
        for statement in migration.forward(ctx):
            client.command(statement)
        client.insert("schema_migrations", [[migration.id, migration.name]], ["id", "name"])
        applied.append(f"{migration.id:04d}_{migration.name}")
        log.info("migration_applied", migration=applied[-1])
    _align_retention(client, ctx)
    return applied


def rollback(client: ClickHouse, ctx: MigrationContext, to: int) -> list[str]:
    """Undo applied migrations above number `to`, newest first."""
    undone = []
    done = applied_ids(client)
    for migration in reversed(discover()):
        if migration.id <= to or migration.id not in done:
            continue
        for statement in migration.backward(ctx):
            client.command(statement)
        client.command(
            "ALTER TABLE schema_migrations DELETE WHERE id = {id:UInt32}",
            parameters={"id": migration.id},
            settings={"mutations_sync": 1},
        )
        undone.append(f"{migration.id:04d}_{migration.name}")
    return undone


# Tables whose rows expire with the raw log's retention, and their time column; the
# rollup tiers' tables expire by `window_start` with their own (MigrationContext).
RETAINED_TABLES = {
    "activity_log": "started_at",
    "alerts": "fired_at",
    "endpoint_rollups": "hour",  # what the raw log holds, by the hour
}


def _align_retention(client: ClickHouse, ctx: MigrationContext) -> None:
    """The TTLs follow the retention settings even after the tables were created."""
    wanted = {
        **{table: (column, ctx.retention_days) for table, column in RETAINED_TABLES.items()},
        **{table: ("window_start", days) for table, days in ctx.rollup_retention_days.items()},
    }
    rows = client.unscoped_rows(
        "SELECT name, engine_full FROM system.tables "
        "WHERE database = currentDatabase() AND name IN {names:Array(String)}",
        {"names": list(wanted)},
        what="retention",
    )
    for table, engine_full in rows:
        column, days = wanted[table]
        if f"toIntervalDay({days})" not in engine_full:
            client.command(
                f"ALTER TABLE {table} MODIFY TTL toDateTime({column}) + INTERVAL {int(days)} DAY"
            )
            log.info("retention_changed", table=table, days=days)
