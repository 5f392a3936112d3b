"""Request and response shapes: the OpenAPI document is the contract."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Final, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from sentinel_usage.analytics.exports import ExportRecord
from sentinel_usage.analytics.usage import PassSummary
from sentinel_usage.passes.model import SentinelPass


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
    total: int = Field(description="Rows matching the filters.")
    next_cursor: str | None = Field(
        description="Pass back as `cursor=` for the rows after this page; null at the end."
    )


class ExportAuditItem(ExportRecord):
    snapshot: UtcTimestamp
    requested_at: UtcTimestamp


class ExportAuditResponse(BaseModel):
    items: list[ExportAuditItem]
    page: int
    per_page: int
    total: int


class ErrorResponse(BaseModel):
    detail: str


class ReadinessResponse(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str]


# The latency percentiles `usage` can give beside the seeds' p95 (`percentiles=`): the
# value at rank floor(p/100 * (n - 1)) of the sorted durations, within 1% of it.
PERCENTILES: Final = (50, 75, 90, 95, 99)
_PERCENTILE_DOC: Final = "Only when asked for with `percentiles=`; within 1% of the exact value."


class LatencyPercentiles(BaseModel):
    """The percentiles other than p95, present only when asked for."""

    p50_latency_ms: float | None = Field(None, description=_PERCENTILE_DOC)
    p75_latency_ms: float | None = Field(None, description=_PERCENTILE_DOC)
    p90_latency_ms: float | None = Field(None, description=_PERCENTILE_DOC)
    p99_latency_ms: float | None = Field(None, description=_PERCENTILE_DOC)


class UsageBucket(LatencyPercentiles):
    bucket_start: UtcTimestamp
    bucket_end: UtcTimestamp
    partial: bool = Field(description="The bucket has not ended yet.")
    total_requests: int
    success_count: int
    error_count: int
    success_rate: float | None = Field(description="success_count / total_requests; null if 0.")
    avg_latency_ms: float | None
    p95_latency_ms: float | None


class UsageMetrics(LatencyPercentiles):
    total_requests: int
    success_count: int
    error_count: int
    success_rate: float | None
    error_rate: float | None
    error_rate_warning: bool = Field(description="error_rate > 0.05")
    avg_latency_ms: float | None
    avg_latency_level: Literal["green", "yellow", "red"] | None = Field(
        description="green < 200 ms, yellow 200-500 ms, red > 500 ms"
    )
    p95_latency_ms: float | None
    unique_endpoints: int
    token_generations: int
    token_failures: int


class UsageRetention(BaseModel):
    days: int = Field(
        description="How long the rollup tier that answers buckets like these is kept "
        "(the 15-minute tier, SENTINEL_QUARTER_HOUR_RETENTION_DAYS, for any zone; the UTC "
        "day tier, SENTINEL_DAY_RETENTION_DAYS, for daily buckets in UTC)."
    )
    held_from: UtcTimestamp = Field(description="The oldest moment that tier still holds.")
    partial: bool = Field(
        description="The range reaches past what the tiers hold: its oldest buckets count "
        "only what is still held, less than happened."
    )


class UsageResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    pass_id: str
    range: Literal["24h", "7d", "30d"]
    tz: str
    granularity: Literal["hour", "day"]
    from_: UtcTimestamp = Field(alias="from", serialization_alias="from")
    to: UtcTimestamp
    timeline: list[UsageBucket]
    metrics: UsageMetrics
    retention: UsageRetention
    last_updated: UtcTimestamp


class EndpointItem(BaseModel):
    endpoint: str = Field(description="The route template (`/v1/items/{id}`).")
    total_requests: int
    error_count: int
    error_rate: float
    avg_latency_ms: float
    p95_latency_ms: float | None = Field(description="Within 1% of the exact value.")


class StatusCodeCount(BaseModel):
    status_code: int
    count: int


class StatusCodes(BaseModel):
    classes: dict[str, int] = Field(
        description="Requests by class (`2xx`, `3xx`, `4xx`, `5xx`; `none` without a status)."
    )
    top: list[StatusCodeCount] = Field(description="The five most frequent status codes.")


class EndpointsResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    pass_id: str
    range: Literal["24h", "7d", "30d"]
    tz: str
    from_: UtcTimestamp = Field(alias="from", serialization_alias="from")
    to: UtcTimestamp
    items: list[EndpointItem] = Field(description="Most requested first.")
    page: int
    per_page: int
    total: int = Field(description="Endpoints with requests in the range.")
    status_codes: StatusCodes


class PassOverviewResponse(BaseModel):
    pass_id: str
    total_requests: int
    success_rate: float | None
    avg_latency_ms: float | None
    last_used_at: UtcTimestamp | None


class AlertItem(BaseModel):
    alert_id: str
    project_id: str
    pass_id: str
    state: Literal["firing", "resolved"]
    error_rate: float
    requests: int
    errors: int
    window_start: UtcTimestamp
    window_end: UtcTimestamp
    fired_at: UtcTimestamp
    resolved_at: UtcTimestamp | None


class AlertListResponse(BaseModel):
    items: list[AlertItem]


class PassView(SentinelPass):
    """A pass as the registry holds it; never its secret."""

    # The API's timestamps: UTC, millisecond precision, fixed width.
    revoked_at: UtcTimestamp | None
    created_at: UtcTimestamp
    updated_at: UtcTimestamp

    @classmethod
    def of(cls, sentinel_pass: SentinelPass) -> PassView:
        return cls(**dict(sentinel_pass))


class CredentialFormats(BaseModel):
    json_text: str = Field(alias="json", description="Paste into a secrets manager.")
    bash: str = Field(description="`export` lines for a shell or a CI environment.")

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class PassCredentials(BaseModel):
    """Shown once: the secret cannot be read again (regenerate to get a new one)."""

    sentinel_pass: PassView = Field(alias="pass")
    client_id: str
    client_secret: str
    token_url: str
    formats: CredentialFormats

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class UnmanagedPass(BaseModel):
    """A pass id's last day of use (a pass the registry does not manage: this alone)."""

    pass_id: str
    last_used_at: UtcTimestamp | None
    total_requests_24h: int
    error_rate_24h: float | None

    @classmethod
    def usage_fields(cls, pass_id: str, summary: PassSummary | None) -> dict[str, Any]:
        """These fields from the analytics' summary (None: no activity)."""
        if summary is None:
            return {"pass_id": pass_id, "last_used_at": None, "total_requests_24h": 0,
                    "error_rate_24h": None}  # fmt: skip
        requests = summary.total_requests_24h
        return {
            "pass_id": pass_id,
            "last_used_at": summary.last_used_at,
            "total_requests_24h": requests,
            "error_rate_24h": summary.error_count_24h / requests if requests else None,
        }


class PassCard(UnmanagedPass):
    """A managed pass on the project's list: what the registry holds, and its last day."""

    agent_name: str
    agent_type: str
    client_id: str
    state: Literal["active", "inactive", "revoked"]
    scopes: list[str]
    valid_from: date
    valid_until: date

    @classmethod
    def of(cls, sentinel_pass: SentinelPass, summary: PassSummary | None) -> PassCard:
        fields = sentinel_pass.model_dump(include=set(cls.model_fields))  # `state` too
        return cls(**fields | cls.usage_fields(sentinel_pass.pass_id, summary))


class PassCardsResponse(BaseModel):
    project_id: str
    items: list[PassCard]
    next_cursor: str | None = Field(description="Pass back as `cursor=`; null at the end.")
    unmanaged: list[UnmanagedPass] = Field(
        description="Pass ids with activity that this registry does not manage, most "
        "recently used first, among the project's 1,000 most recently used (first page)."
    )


class AuditItem(BaseModel):
    id: int
    pass_id: str
    action: Literal[
        "created",
        "updated",
        "scopes_changed",
        "regenerated",
        "activated",
        "deactivated",
        "revoked",
        "deleted",
    ]
    subject: str = Field(description="Who: the token's `sub`.")
    at: UtcTimestamp
    detail: dict[str, Any]


class AuditResponse(BaseModel):
    items: list[AuditItem]
    next_cursor: str | None
