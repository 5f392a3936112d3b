"""Parsing an HTTP ingest body: one JSON object, a JSON array, or NDJSON."""

from __future__ import annotations

from typing import Any

import orjson

from sentinel_usage.core.errors import SentinelError

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})


class BodyError(SentinelError):
    """The body as a whole cannot be read (not JSON, wrong shape)."""


class UnsupportedMediaTypeError(BodyError):
    """A content type that is neither JSON nor NDJSON."""


class TooManyEventsError(SentinelError):
    def __init__(self, count: int, limit: int) -> None:
        self.count = count
        self.limit = limit
        super().__init__(f"{count} events in one request; at most {limit} allowed")


def parse_event_body(body: bytes, content_type: str | None, max_events: int) -> list[Any]:
    """Return the raw event objects of a request body, in order.

    An NDJSON line that is not JSON does not spoil the rest: it is returned as a
    `LineError` in its place, so the caller reports it by index.
    """
    media = media_type(content_type)
    if media in NDJSON_TYPES:
        items: list[Any] = []
        for number, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            if len(items) >= max_events:
                raise TooManyEventsError(_count_lines(body), max_events)
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                items.append(LineError(f"line {number} is not valid JSON: {exc}"))
        return items
    if not is_json(media):
        raise UnsupportedMediaTypeError(
            f"unsupported content type {media!r}; use application/json or application/x-ndjson"
        )
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(f"body is not valid JSON: {exc}") from None
    if isinstance(document, dict):
        return [document]
    if isinstance(document, list):
        if len(document) > max_events:
            raise TooManyEventsError(len(document), max_events)
        return document
    raise BodyError("body must be a JSON object, a JSON array of objects, or NDJSON")


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header (JSON when there is none)."""
    return (content_type or "application/json").split(";", 1)[0].strip().lower()


def is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


class LineError:
    """Stands in for an NDJSON line that could not be parsed."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def _count_lines(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line.strip())
