"""AlertStore: alerts in and out of the `alerts` table (latest state per alert)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from sentinel_usage.analytics.clickhouse import UNAVAILABLE_ERRORS, storage_call
from sentinel_usage.analytics.scope import ProjectScope
from sentinel_usage.core.alerts import AlertEvent
from sentinel_usage.core.errors import DependencyUnavailableError
from sentinel_usage.core.events import event_time

COLUMNS: Final = (
    "alert_id",
    "project_id",
    "pass_id",
    "state",
    "error_rate",
    "requests",
    "errors",
    "window_start",
    "window_end",
    "fired_at",
    "resolved_at",
)


class AlertStore:
    """Blocking (run in a thread). Writing the same (alert_id, state) again is harmless;
    `resolved` outranks `firing` (the table's version is the state)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def write(self, events: Sequence[AlertEvent]) -> None:
        if not events:
            return
        rows = [[getattr(e, c) for c in COLUMNS] for e in events]
        with storage_call("alert insert"):
            self._client.insert("alerts", rows, column_names=COLUMNS)

    def list(
        self,
        scope: ProjectScope,
        pass_id: str | None = None,
        state: str | None = None,
        limit: int = 100,
    ) -> list[AlertEvent]:
        where, params = scope.where(pass_id)
        if state is not None:
            where += " AND state = {state:String}"
            params["state"] = state
        try:
            rows = self._client.query(
                f"SELECT {', '.join(COLUMNS)} FROM alerts FINAL WHERE {where} "
                "ORDER BY fired_at DESC, alert_id LIMIT {limit:UInt32}",
                parameters={**params, "limit": limit},
            ).result_rows
        except UNAVAILABLE_ERRORS as exc:
            raise DependencyUnavailableError(f"ClickHouse alert query failed: {exc}") from exc
        return [_event(row) for row in rows]


def _event(row: tuple[Any, ...]) -> AlertEvent:
    values = dict(zip(COLUMNS, row, strict=True))
    for key in ("window_start", "window_end", "fired_at"):
        values[key] = event_time(values[key])
    if values["resolved_at"] is not None:
        values["resolved_at"] = event_time(values["resolved_at"])
    values["alert_id"] = str(values["alert_id"])
    return AlertEvent(**values)
