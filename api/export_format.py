"""Rendering export rows as CSV, JSON or JSONL: the same content in all three.

CSV follows RFC 4180 (header row, CRLF, quotes doubled), UTF-8, `metadata` as
JSON text, and neutralises cells a spreadsheet would run as a formula (OWASP:
a leading `=`, `+`, `-`, `@`, tab or CR gets a `'` in front).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

import orjson

from sentinel_usage.analytics.activity import ROW_COLUMNS

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
CHUNK_ROWS = 500


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"
    JSONL = "jsonl"


MEDIA_TYPES: Final[dict[ExportFormat, str]] = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.JSON: "application/json",
    ExportFormat.JSONL: "application/x-ndjson",
}


def export_filename(pass_id: str, at: datetime, fmt: ExportFormat) -> str:
    return f"sentinel-pass-activity-{pass_id}-{at.astimezone(UTC):%Y%m%dT%H%M%SZ}.{fmt.value}"


def render(rows: Sequence[dict[str, Any]], fmt: ExportFormat) -> Iterator[bytes]:
    if fmt is ExportFormat.CSV:
        return _csv(rows)
    if fmt is ExportFormat.JSON:
        return _json(rows)
    return _jsonl(rows)


def plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON-ready values (timestamps as fixed-width UTC text)."""
    out = dict(row)
    out["event_id"] = str(row["event_id"])
    out["started_at"] = _timestamp(row["started_at"])
    return out


def _timestamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _jsonl(rows: Sequence[dict[str, Any]]) -> Iterator[bytes]:
    for start in range(0, len(rows), CHUNK_ROWS):
        yield b"".join(orjson.dumps(plain(r)) + b"\n" for r in rows[start : start + CHUNK_ROWS])


def _json(rows: Sequence[dict[str, Any]]) -> Iterator[bytes]:
    yield b"["
    for start in range(0, len(rows), CHUNK_ROWS):
        body = b",".join(orjson.dumps(plain(r)) for r in rows[start : start + CHUNK_ROWS])
        yield (b"," if start else b"") + body
    yield b"]"


def _csv(rows: Sequence[dict[str, Any]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(ROW_COLUMNS)
    for start in range(0, len(rows), CHUNK_ROWS):
        for row in rows[start : start + CHUNK_ROWS]:
            writer.writerow([_cell(column, row[column]) for column in ROW_COLUMNS])
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")  # the header of an empty export


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column == "started_at":
        return _timestamp(value)
    if column == "metadata":
        return orjson.dumps(value).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text
