"""ActivityLogWriter: the one way into the `activity_log` table (the stream's sink uses it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from sentinel_usage.analytics.clickhouse import storage_call
from sentinel_usage.core.columns import EVENT_SCHEMA, events_table, row_keys
from sentinel_usage.core.events import UsageEvent

COLUMNS: Final = (
    "project_id",
    "pass_id",
    "started_at",
    "event_id",
    "client_id",
    "activity_type",
    "endpoint",
    "http_method",
    "status_code",
    "success",
    "duration_ms",
    "client_ip",
    "user_agent",
    "error_message",
    "metadata",
)


class ActivityLogWriter:
    """Inserts events as one Arrow block per call.

    Blocking (run it in a thread from async code). Raises
    DependencyUnavailableError when ClickHouse cannot be reached and StorageError
    when it refuses the write (a read-only or full disk, too many parts, a schema
    mismatch): the caller retries both and never skips the rows.
    Writing the same events again is harmless: the table folds duplicates.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._probe_ready = False

    def write(self, events: pa.Table | Sequence[UsageEvent]) -> int:
        """Insert `events`: a table of core.columns.EVENT_SCHEMA (extra columns are
        ignored), or event objects."""
        table = events if isinstance(events, pa.Table) else events_table(events)
        if table.num_rows == 0:
            return 0
        empty_if_null = {"client_ip", "user_agent", "error_message"}
        block = pa.table(
            {
                name: pc.fill_null(table.column(name), "")
                if name in empty_if_null
                else table.column(name)
                for name in COLUMNS
            }
        )
        with storage_call("activity log insert"):
            self._client.insert_arrow("activity_log", block)
        return int(table.num_rows)

    def existing(self, events: pa.Table) -> pa.Table:
        """The identities (IDENTITY columns) among `events` that the log already holds
        (a resent event, or a record redelivered after its rows were inserted).

        The candidate ids travel in a session-scoped temporary table: binding tens
        of thousands of values as query parameters costs ~5 us each in
        clickhouse-connect (measured), ten times the insert and the lookup together;
        and a tuple-IN over (project, pass, started_at, event_id) with 50k keys
        did not finish in minutes on chDB. The lookup narrows by pass and time
        (the sort key), then matches ids; the caller compares exact identities.
        """
        if events.num_rows == 0:
            return _EMPTY_IDENTITIES
        started = pc.min_max(events.column("started_at"))
        with storage_call("activity log lookup"):
            self._ensure_probe()
            self._client.command("TRUNCATE TABLE dedup_probe")
            self._client.insert_arrow(
                "dedup_probe", pa.table({"event_id": pc.unique(events.column("event_id"))})
            )
            found = self._client.query_arrow(
                "SELECT project_id, pass_id, started_at, toString(event_id) AS event_id "
                "FROM activity_log "
                "WHERE project_id IN {projects:Array(String)} "
                "AND pass_id IN {passes:Array(String)} "
                "AND started_at BETWEEN {lo:DateTime64(3, 'UTC')} AND {hi:DateTime64(3, 'UTC')} "
                "AND event_id IN (SELECT event_id FROM dedup_probe)",
                parameters={
                    "projects": pc.unique(events.column("project_id")).to_pylist(),
                    "passes": pc.unique(events.column("pass_id")).to_pylist(),
                    "lo": started["min"].as_py(),
                    "hi": started["max"].as_py(),
                },
            )
        return found.cast(_IDENTITY_SCHEMA)

    def _ensure_probe(self) -> None:
        if not self._probe_ready:
            self._client.command(
                "CREATE TEMPORARY TABLE IF NOT EXISTS dedup_probe (event_id UUID) ENGINE = Memory"
            )
            self._probe_ready = True


# What makes two events the same one: the table's deduplication key.
IDENTITY: Final = ("project_id", "pass_id", "started_at", "event_id")
_IDENTITY_SCHEMA: Final = pa.schema([EVENT_SCHEMA.field(name) for name in IDENTITY])
_EMPTY_IDENTITIES: Final = _IDENTITY_SCHEMA.empty_table()


def identity_keys(table: pa.Table) -> pa.Array:
    """Each row's identity as one string (for set operations in Arrow)."""
    return row_keys(*(table.column(name) for name in IDENTITY))
