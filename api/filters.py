"""The activity log's query parameters, validated with messages that name the parameter."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Annotated, Any, Final

from fastapi import Depends, Query
from fastapi.exceptions import RequestValidationError

from sentinel_usage.analytics.activity import ActivityFilter


class ActivityTypeParam(StrEnum):
    API_REQUEST = "api_request"
    TOKEN_GENERATION = "token_generation"  # noqa: S105 - an activity type
    ERROR = "error"


class StatusParam(StrEnum):
    SUCCESS = "success"
    FAILED = "failed"


def _invalid(param: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ("query", param), "msg": message, "type": "value_error"}]
    )


# RFC 3339: a full-date, or a date-time with `Z` or an offset; the document says the same
# (formats `date` and `date-time`), so what is schema-valid is exactly what is accepted.
_INSTANT_SHAPE: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2}))?"
)
MAX_INSTANT_CHARS: Final = 40


def parse_instant(param: str, text: str) -> datetime:
    """An RFC 3339 date (midnight UTC) or date-time, in UTC."""
    try:
        if not _INSTANT_SHAPE.fullmatch(text):
            raise ValueError(text)
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), UTC)
        value = datetime.fromisoformat(text.upper())
    except ValueError:
        raise _invalid(
            param,
            f"{text!r} is not an ISO 8601 date or date-time with a zone "
            "(RFC 3339, e.g. 2026-11-24 or 2026-11-24T09:30:00Z)",
        ) from None
    try:
        return value.astimezone(UTC)
    except OverflowError:  # within a day of year 1 or 9999: beyond any stored event
        return (
            datetime.min.replace(tzinfo=UTC)
            if value.year == 1
            else datetime.max.replace(tzinfo=UTC)
        )


def _instant_query(description: str) -> Any:
    return Query(
        max_length=MAX_INSTANT_CHARS,
        description=description,
        json_schema_extra={
            "anyOf": [
                {"type": "string", "format": "date"},
                {"type": "string", "format": "date-time", "maxLength": MAX_INSTANT_CHARS},
            ]
        },
    )


async def activity_filter(
    activity_type: Annotated[ActivityTypeParam | None, Query(description="Only this type.")] = None,
    status: Annotated[StatusParam | None, Query(description="success or failed")] = None,
    endpoint: Annotated[
        str | None,
        Query(max_length=2048, description="Case-insensitive substring of the endpoint (literal)."),
    ] = None,
    start_date: Annotated[
        str | None,
        _instant_query(
            "Inclusive: an RFC 3339 date (midnight UTC) or date-time with a zone. "
            "Not after end_date (422)."
        ),
    ] = None,
    end_date: Annotated[
        str | None,
        _instant_query("Exclusive: an RFC 3339 date (midnight UTC) or date-time with a zone."),
    ] = None,
) -> ActivityFilter:
    start = parse_instant("start_date", start_date) if start_date is not None else None
    end = parse_instant("end_date", end_date) if end_date is not None else None
    if start is not None and end is not None and start > end:
        raise _invalid("start_date", "start_date is after end_date")
    return ActivityFilter(
        activity_type=activity_type.value if activity_type else None,
        status=status.value if status else None,
        endpoint=endpoint or None,
        start=start,
        end=end,
    )


ActivityFilterDep = Annotated[ActivityFilter, Depends(activity_filter)]
