"""AlertStore: alerts in and out of the `alerts` table (latest state per alert)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.analytics.scope import ProjectScope
from sentinel_usage.core.alerts import AlertEvent

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

    def __init__(self, clickhouse: ClickHouse) -> None:
        self._clickhouse = clickhouse

    def write(self, events: Sequence[AlertEvent]) -> None:
        if events:
            self._clickhouse.insert(
                "alerts", [[getattr(e, c) for c in COLUMNS] for e in events], COLUMNS
            )

    def list(
        self,
        scope: ProjectScope,
        pass_id: str | None = None,
        state: str | None = None,
        limit: int = 100,
    ) -> list[AlertEvent]:
        query = scope.on("alerts", pass_id)
        if state is not None:
            query = query.where("state = {state:String}", state=state)
        rows = self._clickhouse.select(
            query, ", ".join(COLUMNS), "ORDER BY fired_at DESC, alert_id LIMIT {limit:UInt32}",
            limit=limit,
        )  # fmt: skip
        return [_event(row) for row in rows]


def _event(row: tuple[Any, ...]) -> AlertEvent:
    values = dict(zip(COLUMNS, row, strict=True))
    values["alert_id"] = str(values["alert_id"])
    return AlertEvent(**values)
