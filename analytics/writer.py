"""ActivityLogWriter: the one way into the `activity_log` table (the stream's sink uses it)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.core.columns import EVENT_SCHEMA, NULLABLE_TEXT, events_table, row_keys
from sentinel_usage.core.events import UsageEvent

# Every event field (the table's own columns, such as `ingested_at`, are its defaults).
COLUMNS: Final = tuple(name for name in EVENT_SCHEMA.names if name != "row")


class ActivityLogWriter:
    """Inserts events as one Arrow block per call.

    Blocking (run it in a thread from async code). Raises
    DependencyUnavailableError when ClickHouse cannot be reached and StorageError
    when it refuses the write (a read-only or full disk, too many parts, a schema
    mismatch): the caller retries both and never skips the rows.
    Writing the same events again is harmless: the table folds duplicates.
    """

    def __init__(self, clickhouse: ClickHouse) -> None:
        self._clickhouse = clickhouse

    def write(self, events: pa.Table | Sequence[UsageEvent]) -> int:
        """Insert `events`: a table of core.columns.EVENT_SCHEMA (extra columns are
        ignored), or event objects."""
        table = events if isinstance(events, pa.Table) else events_table(events)
        if table.num_rows == 0:
            return 0
        block = pa.table(
            {
                name: pc.fill_null(table.column(name), "")
                if name in NULLABLE_TEXT
                else table.column(name)
                for name in COLUMNS
            }
        )
        self._clickhouse.insert_arrow("activity_log", block)
        return int(table.num_rows)

    def existing(self, events: pa.Table) -> pa.Table:
        """The identities (IDENTITY columns) among `events` that the log already holds:
        a resent event (whatever its other fields: the first version accepted wins)
        or a record redelivered after its rows were inserted.

        Through the projection by (project_id, event_id) (migration 0006), so the
        cost grows with the ids asked, not with the log: ask only for the ids the
        sink's EventIdFilter cannot rule out. chDB uses the projection for a bound
        array of ids but not for `IN (SELECT ...)` nor with DISTINCT (EXPLAIN: every
        granule of the main table), and the result column must not be aliased
        `event_id`, which would filter the text form instead of the indexed UUID.
        A row may come back twice (unmerged parts): callers test membership.
        """
        if events.num_rows == 0:
            return _EMPTY_IDENTITIES
        projects = pc.unique(events.column("project_id")).to_pylist()
        ids = pc.unique(events.column("event_id")).to_pylist()
        found = [
            self._clickhouse.arrow(
                "SELECT project_id, toString(event_id) AS id FROM activity_log "
                "WHERE project_id IN {projects:Array(String)} AND event_id IN {ids:Array(UUID)}",
                {"projects": projects, "ids": ids[start : start + LOOKUP_CHUNK]},
                what="activity log lookup",
            ).rename_columns(list(IDENTITY))
            for start in range(0, len(ids), LOOKUP_CHUNK)
        ]
        return pa.concat_tables([t.cast(_IDENTITY_SCHEMA) for t in found])

    def identities(self, since: datetime | None = None) -> Iterator[pa.Table]:
        """Every identity the log holds (ingested since `since`), in blocks, to fill
        an EventIdFilter."""
        where = "" if since is None else "WHERE ingested_at >= {since:DateTime64(3, 'UTC')}"
        with self._clickhouse.column_blocks(
            f"SELECT project_id, toString(event_id) AS event_id FROM activity_log {where}",
            {"since": since},
            what="activity log identities",
        ) as blocks:
            for block in blocks:
                yield pa.table(list(block), schema=_IDENTITY_SCHEMA)

    def count(self) -> int:
        """Rows in the log (before merges fold repeats: an upper bound)."""
        return int(self._clickhouse.command("SELECT count() FROM activity_log", what="count"))

    def clock(self) -> datetime:
        """ClickHouse's clock, the one `ingested_at` is written with."""
        return self._clickhouse.now()


LOOKUP_CHUNK: Final = 10_000  # ids bound per lookup query

# What makes two events the same one, for the whole retention: within a project, the
# event_id (the table's own key also has pass and time, for its order; the sink never
# writes a second version, see existing()).
IDENTITY: Final = ("project_id", "event_id")
_IDENTITY_SCHEMA: Final = pa.schema([EVENT_SCHEMA.field(name) for name in IDENTITY])
_EMPTY_IDENTITIES: Final = _IDENTITY_SCHEMA.empty_table()


def identity_keys(table: pa.Table) -> pa.Array:
    """Each row's identity as one string (for set operations in Arrow)."""
    return row_keys(*(table.column(name) for name in IDENTITY))
