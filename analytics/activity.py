"""Reading the activity log of one pass, always within a ProjectScope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from sentinel_usage.analytics.clickhouse import UNAVAILABLE_ERRORS
from sentinel_usage.analytics.scope import ProjectScope
from sentinel_usage.core.errors import DependencyUnavailableError
from sentinel_usage.core.events import event_time

ROW_COLUMNS: Final = (
    "event_id",
    "activity_type",
    "started_at",
    "endpoint",
    "http_method",
    "success",
    "status_code",
    "duration_ms",
    "client_ip",
    "user_agent",
    "error_message",
    "metadata",
)
_SELECT: Final = ", ".join(ROW_COLUMNS)


@dataclass(frozen=True)
class ActivityPage:
    items: list[dict[str, Any]]
    total: int


class ActivityLogQuery:
    """Pages of one pass's activity, newest first (ties broken by event_id).

    Blocking: call from a thread in async code. FINAL folds redelivered
    duplicates that ClickHouse has not merged yet. Note that ClickHouse orders
    UUIDs by their second 64-bit half first, not as their text sorts; the
    tie-break is deterministic and matches the table's sort key.
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    def pass_exists(self, scope: ProjectScope, pass_id: str) -> bool:
        where, params = scope.where(pass_id)
        rows = self._query(f"SELECT 1 FROM activity_log WHERE {where} LIMIT 1", params)
        return bool(rows)

    def page(self, scope: ProjectScope, pass_id: str, page: int, per_page: int) -> ActivityPage:
        where, params = scope.where(pass_id)
        total = self._query(f"SELECT count() FROM activity_log FINAL WHERE {where}", params)[0][0]
        rows = self._query(
            f"SELECT {_SELECT} FROM activity_log FINAL WHERE {where} "
            "ORDER BY started_at DESC, event_id DESC "
            "LIMIT {limit:UInt32} OFFSET {offset:UInt64}",
            {**params, "limit": per_page, "offset": (page - 1) * per_page},
        )
        return ActivityPage([_row(r) for r in rows], int(total))

    def _query(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        try:
            return list(self._client.query(sql, parameters=params).result_rows)
        except UNAVAILABLE_ERRORS as exc:
            raise DependencyUnavailableError(f"ClickHouse query failed: {exc}") from exc


def _row(values: tuple[Any, ...]) -> dict[str, Any]:
    row = dict(zip(ROW_COLUMNS, values, strict=True))
    row["started_at"] = event_time(row["started_at"])
    row["success"] = bool(row["success"])
    for optional in ("client_ip", "user_agent", "error_message"):
        row[optional] = row[optional] or None
    row["metadata"] = orjson.loads(row["metadata"]) if row["metadata"] else {}
    return row
