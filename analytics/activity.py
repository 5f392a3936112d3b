"""Reading the activity log of one pass, always within a ProjectScope: filtered pages
(newest first) for dashboards, and export batches (oldest first) for auditors."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import orjson

from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.analytics.scope import ProjectScope, ScopedQuery
from sentinel_usage.core.columns import EVENT_SCHEMA, NULLABLE_TEXT
from sentinel_usage.core.errors import SentinelError
from sentinel_usage.core.events import IDENTIFIER_FIELDS
from sentinel_usage.core.windows import EPOCH, unix_millis

# A row of a pass's log: the event without the identifiers the caller asked by.
ROW_COLUMNS: Final = tuple(
    name for name in EVENT_SCHEMA.names if name != "row" and name not in IDENTIFIER_FIELDS
)
_SELECT: Final = ", ".join(ROW_COLUMNS)
EXPORT_LIMIT: Final = 10_000

Order = Literal["desc", "asc"]


class InvalidCursorError(SentinelError):
    """A cursor that was not made by this service, or for the other order."""


@dataclass(frozen=True)
class ActivityFilter:
    """The activity log's filter controls; every field optional."""

    activity_type: str | None = None
    status: Literal["success", "failed"] | None = None
    endpoint: str | None = None  # case-insensitive substring, no wildcards
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive

    def narrow(self, query: ScopedQuery) -> ScopedQuery:
        """`query` with these filters."""
        if self.activity_type is not None:
            query = query.where(
                "activity_type = {activity_type:String}", activity_type=self.activity_type
            )
        if self.status is not None:
            query = query.where("success = {success:Bool}", success=self.status == "success")
        if self.endpoint:
            query = query.where(
                "positionCaseInsensitiveUTF8(endpoint, {endpoint:String}) > 0",
                endpoint=self.endpoint,
            )
        if self.start is not None:
            query = query.where(
                "started_at >= {start:DateTime64(3, 'UTC')}", start=_storable(self.start)
            )
        if self.end is not None:
            query = query.where("started_at < {end:DateTime64(3, 'UTC')}", end=_storable(self.end))
        return query

    def describe(self) -> dict[str, str]:
        """The filters in force, for the export audit trail."""
        values = {
            "activity_type": self.activity_type,
            "status": self.status,
            "endpoint": self.endpoint,
            "start_date": self.start.isoformat() if self.start else None,
            "end_date": self.end.isoformat() if self.end else None,
        }
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class Cursor:
    """A position in the log (the last row read) and, for exports, the snapshot:
    rows ingested after `snapshot` are not part of the walk."""

    order: Order
    started_at: datetime
    event_id: uuid.UUID
    snapshot: datetime | None = None

    def encode(self) -> str:
        position = f"{unix_millis(self.started_at)}.{self.event_id.hex}"
        if self.order == "desc":
            return f"d.{position}"
        assert self.snapshot is not None, "an export cursor carries its snapshot"
        return f"a.{position}.{unix_millis(self.snapshot)}"

    @classmethod
    def decode(cls, text: str, order: Order) -> Cursor:
        if not CURSOR_PATTERNS[order].fullmatch(text):
            other: Order = "asc" if order == "desc" else "desc"
            if CURSOR_PATTERNS[other].fullmatch(text):
                raise InvalidCursorError(
                    f"this cursor is for {'exports' if other == 'asc' else 'pages'}, not here"
                )
            raise InvalidCursorError("cursor is not valid; pass back a cursor this API returned")
        _, millis, event_id, *snapshot = text.split(".")
        return cls(
            order=order,
            started_at=EPOCH + timedelta(milliseconds=int(millis)),
            event_id=uuid.UUID(hex=event_id),
            snapshot=EPOCH + timedelta(milliseconds=int(snapshot[0])) if snapshot else None,
        )


# A cursor is a keyset position in plain text: `d.<ms>.<event_id hex>` for pages (newest
# first), `a.<ms>.<event_id hex>.<snapshot ms>` for exports. Its grammar is exact, so the
# OpenAPI document can state it; a crafted cursor is only a position in a log the caller
# may read anyway. 13 digits of milliseconds stay inside DateTime64(3) (year 2286).
CURSOR_PATTERNS: Final[dict[Order, re.Pattern[str]]] = {
    "desc": re.compile(r"d\.[0-9]{1,13}\.[0-9a-f]{32}"),
    "asc": re.compile(r"a\.[0-9]{1,13}\.[0-9a-f]{32}\.[0-9]{1,13}"),
}


@dataclass(frozen=True)
class ActivityPage:
    items: list[dict[str, Any]]
    total: int
    next_cursor: Cursor | None = None


@dataclass(frozen=True)
class ExportBatch:
    rows: list[dict[str, Any]]
    total: int  # rows matching the filters in the snapshot, over the whole range
    snapshot: datetime
    next_cursor: Cursor | None = None  # where the next batch starts; None when complete

    @property
    def truncated(self) -> bool:
        return self.next_cursor is not None


class ActivityLogQuery:
    """Blocking: async code calls it through analytics/facade.py.

    FINAL folds redelivered duplicates that ClickHouse has not merged yet.
    Rows are ordered by (started_at, event_id); note that ClickHouse orders
    UUIDs by their second 64-bit half first, not as their text sorts, and
    cursors compare with ClickHouse's own order, so paging stays consistent.
    """

    def __init__(self, clickhouse: ClickHouse) -> None:
        self._clickhouse = clickhouse

    def pass_exists(self, scope: ProjectScope, pass_id: str) -> bool:
        query = scope.on("activity_log", pass_id, final=False)
        return bool(self._clickhouse.select(query, "1", "LIMIT 1"))

    def page(
        self,
        scope: ProjectScope,
        pass_id: str,
        page: int,
        per_page: int,
        filters: ActivityFilter = ActivityFilter(),
        after: Cursor | None = None,
    ) -> ActivityPage:
        """Newest first. With `after`, the rows following that cursor (keyset
        paging: a growing log is walked without skips or repeats); without, the
        `page`-th page by offset."""
        query = filters.narrow(scope.on("activity_log", pass_id))
        total = self._count(query)
        offset = (page - 1) * per_page
        if after is not None:
            query = query.where(
                "(started_at, event_id) < ({c_at:DateTime64(3, 'UTC')}, {c_id:UUID})",
                c_at=after.started_at,
                c_id=after.event_id,
            )
            offset = 0
        rows = self._clickhouse.select(
            query,
            _SELECT,
            "ORDER BY started_at DESC, event_id DESC LIMIT {limit:UInt32} OFFSET {offset:UInt64}",
            limit=per_page + 1,
            offset=offset,
        )
        items = [_row(r) for r in rows[:per_page]]
        more = len(rows) > per_page
        last = items[-1] if items and more else None
        next_cursor = Cursor("desc", last["started_at"], last["event_id"]) if last else None
        return ActivityPage(items, total, next_cursor)

    def export_batch(
        self,
        scope: ProjectScope,
        pass_id: str,
        filters: ActivityFilter,
        after: Cursor | None = None,
        limit: int = EXPORT_LIMIT,
        snapshot_lag: timedelta = timedelta(seconds=5),
    ) -> ExportBatch:
        """Up to `limit` rows, oldest first, of the snapshot pinned by the first batch.

        Rows are never re-inserted once written (the sink drops events the log
        holds), so `ingested_at` is when a row first became visible, and a
        snapshot bound on it gives every batch of one export the same rows. The
        bound is ClickHouse's own clock less `snapshot_lag`, so that an insert
        still in flight when the first batch is read cannot turn up later
        behind the cursor.
        """
        snapshot = self._clickhouse.now() - snapshot_lag
        if after is not None and after.snapshot is not None:
            snapshot = min(snapshot, after.snapshot)  # a cursor never widens the snapshot
        query = filters.narrow(scope.on("activity_log", pass_id)).where(
            "ingested_at <= {snapshot:DateTime64(3, 'UTC')}", snapshot=snapshot
        )
        total = self._count(query)
        if after is not None:
            query = query.where(
                "(started_at, event_id) > ({c_at:DateTime64(3, 'UTC')}, {c_id:UUID})",
                c_at=after.started_at,
                c_id=after.event_id,
            )
        rows = self._clickhouse.select(
            query, _SELECT, "ORDER BY started_at ASC, event_id ASC LIMIT {limit:UInt32}",
            limit=limit + 1,
        )  # fmt: skip
        items = [_row(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = Cursor("asc", last["started_at"], last["event_id"], snapshot)
        return ExportBatch(items, total, snapshot, next_cursor)

    def _count(self, query: ScopedQuery) -> int:
        ((total,),) = self._clickhouse.select(query, "count()")
        return int(total)


def _row(values: tuple[Any, ...]) -> dict[str, Any]:
    row = dict(zip(ROW_COLUMNS, values, strict=True))
    row["success"] = bool(row["success"])
    for optional in NULLABLE_TEXT:
        row[optional] = row[optional] or None
    row["metadata"] = orjson.loads(row["metadata"]) if row["metadata"] else {}
    return row


# DateTime64(3)'s range. A filter bound beyond it is clamped to it: every stored row is
# inside, so the answer is the same, and ClickHouse refuses such a parameter outright.
_STORABLE_RANGE: Final = (
    datetime(1900, 1, 1, tzinfo=UTC),
    datetime(2299, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
)


def _storable(at: datetime) -> datetime:
    low, high = _STORABLE_RANGE
    return min(max(at, low), high)
