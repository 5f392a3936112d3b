"""Request and response shapes: the OpenAPI document is the contract."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, PlainSerializer


def _utc_millis(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Every timestamp the API returns: UTC, millisecond precision, fixed width
# (`2026-11-24T09:30:00.000Z`), so that text order is time order.
UtcTimestamp = Annotated[datetime, PlainSerializer(_utc_millis, return_type=str)]


class FieldError(BaseModel):
    field: str = Field(description="The event field at fault ('' for the event as a whole).")
    message: str


class RejectedEvent(BaseModel):
    index: int = Field(description="Position of the event in the request (0-based).")
    errors: list[FieldError]


class IngestResponse(BaseModel):
    accepted: int = Field(description="Events acknowledged by the broker (acks=all).")
    rejected: list[RejectedEvent]


class ActivityRow(BaseModel):
    event_id: UUID
    activity_type: Literal["api_request", "token_generation", "error"]
    started_at: UtcTimestamp
    endpoint: str
    http_method: str
    success: bool
    status_code: int | None
    duration_ms: float
    client_ip: str | None
    user_agent: str | None
    error_message: str | None
    metadata: dict[str, Any]


class ActivityPageResponse(BaseModel):
    items: list[ActivityRow]
    page: int
    per_page: int
    total: int


class ErrorResponse(BaseModel):
    detail: str


class ReadinessResponse(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str]
