"""The export audit trail: every export is recorded before its first byte is sent."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson

from sentinel_usage.analytics.clickhouse import UNAVAILABLE_ERRORS
from sentinel_usage.analytics.scope import ProjectScope
from sentinel_usage.core.errors import DependencyUnavailableError
from sentinel_usage.core.events import event_time

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


@dataclass(frozen=True)
class ExportRecord:
    export_id: uuid.UUID
    project_id: str
    pass_id: str
    subject: str
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
    """Blocking: call from a thread in async code."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def record(self, entry: ExportRecord) -> None:
        row = [
            entry.export_id,
            entry.project_id,
            entry.pass_id,
            entry.subject,
            entry.format,
            orjson.dumps(entry.filters).decode(),
            entry.cursor or "",
            entry.row_count,
            entry.total_count,
            entry.truncated,
            entry.next_cursor or "",
            entry.snapshot,
            entry.requested_at,
        ]
        try:
            self._client.insert("export_audit", [row], column_names=COLUMNS)
        except UNAVAILABLE_ERRORS as exc:
            raise DependencyUnavailableError(f"ClickHouse audit insert failed: {exc}") from exc

    def list(self, scope: ProjectScope, limit: int, offset: int) -> tuple[list[ExportRecord], int]:
        where, params = scope.where()
        try:
            total = self._client.query(
                f"SELECT count() FROM export_audit FINAL WHERE {where}", parameters=params
            ).result_rows[0][0]
            rows = self._client.query(
                f"SELECT {', '.join(COLUMNS)} FROM export_audit FINAL WHERE {where} "
                "ORDER BY requested_at DESC, export_id LIMIT {limit:UInt32} OFFSET {offset:UInt64}",
                parameters={**params, "limit": limit, "offset": offset},
            ).result_rows
        except UNAVAILABLE_ERRORS as exc:
            raise DependencyUnavailableError(f"ClickHouse audit query failed: {exc}") from exc
        return [_record(r) for r in rows], int(total)


def _record(row: tuple[Any, ...]) -> ExportRecord:
    values = dict(zip(COLUMNS, row, strict=True))
    return ExportRecord(
        export_id=values["export_id"],
        project_id=values["project_id"],
        pass_id=values["pass_id"],
        subject=values["subject"],
        format=values["format"],
        filters=orjson.loads(values["filters"]),
        cursor=values["cursor"] or None,
        row_count=values["row_count"],
        total_count=values["total_count"],
        truncated=bool(values["truncated"]),
        next_cursor=values["next_cursor"] or None,
        snapshot=event_time(values["snapshot"]),
        requested_at=event_time(values["requested_at"]),
    )
