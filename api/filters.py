"""The activity log's query parameters, validated with messages that name the parameter."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Annotated

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


def parse_instant(param: str, text: str) -> datetime:
    """ISO 8601 date (midnight UTC) or date-time (with a zone; naive means UTC)."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(0), UTC)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _invalid(
            param,
            f"{text!r} is not an ISO 8601 date or date-time "
            "(e.g. 2026-11-24 or 2026-11-24T09:30:00Z)",
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def activity_filter(
    activity_type: Annotated[ActivityTypeParam | None, Query(description="Only this type.")] = None,
    status: Annotated[StatusParam | None, Query(description="success or failed")] = None,
    endpoint: Annotated[
        str | None,
        Query(max_length=2048, description="Case-insensitive substring of the endpoint (literal)."),
    ] = None,
    start_date: Annotated[
        str | None, Query(max_length=40, description="Inclusive: ISO 8601 date or date-time.")
    ] = None,
    end_date: Annotated[
        str | None, Query(max_length=40, description="Exclusive: ISO 8601 date or date-time.")
    ] = None,
) -> ActivityFilter:
    start = parse_instant("start_date", start_date) if start_date else None
    end = parse_instant("end_date", end_date) if end_date else None
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
