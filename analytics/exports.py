"""The export audit trail: every export is recorded before its first byte is sent."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field

from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.analytics.scope import ProjectScope

COLUMNS: Final = (
    "export_id",
    "project_id",
    "pass_id",
    "subject",
    "format",
    "filters",
    "cursor",
    "row_count",
    "total_count",
    "truncated",
    "next_cursor",
    "snapshot",
    "requested_at",
)


class ExportRecord(BaseModel):
    """One export as the audit trail keeps it (the API's ExportAuditItem extends it)."""

    model_config = ConfigDict(frozen=True)

    export_id: uuid.UUID
    project_id: str
    pass_id: str
    subject: str = Field(description="The token's `sub`: who exported.")
    format: str
    filters: dict[str, str]
    cursor: str | None
    row_count: int
    total_count: int
    truncated: bool
    next_cursor: str | None
    snapshot: datetime
    requested_at: datetime


class ExportAudit:
    """Blocking: async code calls it through analytics/facade.py."""

    def __init__(self, clickhouse: ClickHouse) -> None:
        self._clickhouse = clickhouse

    def record(self, entry: ExportRecord) -> None:
        row = [getattr(entry, c) for c in COLUMNS]
        row[COLUMNS.index("filters")] = orjson.dumps(entry.filters).decode()
        for optional in ("cursor", "next_cursor"):
            row[COLUMNS.index(optional)] = row[COLUMNS.index(optional)] or ""
        self._clickhouse.insert("export_audit", [row], COLUMNS)

    def list(self, scope: ProjectScope, limit: int, offset: int) -> tuple[list[ExportRecord], int]:
        query = scope.on("export_audit")
        ((total,),) = self._clickhouse.select(query, "count()")
        rows = self._clickhouse.select(
            query,
            ", ".join(COLUMNS),
            "ORDER BY requested_at DESC, export_id LIMIT {limit:UInt32} OFFSET {offset:UInt64}",
            limit=limit,
            offset=offset,
        )
        return [_record(r) for r in rows], int(total)


def _record(row: tuple[Any, ...]) -> ExportRecord:
    values = dict(zip(COLUMNS, row, strict=True))
    values["filters"] = orjson.loads(values["filters"])
    values["truncated"] = bool(values["truncated"])
    for optional in ("cursor", "next_cursor"):
        values[optional] = values[optional] or None
    return ExportRecord(**values)
