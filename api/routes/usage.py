"""The Usage tab's analytics: usage over a range, a pass's overview, the project's passes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final
from zoneinfo import ZoneInfo, available_timezones

from fastapi import APIRouter, Depends, Query
from pydantic import AfterValidator

from sentinel_usage.analytics.usage import UsageRange, UsageReport, bucket_bounds
from sentinel_usage.api.deps import (
    AnalyticsDep,
    PassIdPath,
    ReadScopeDep,
    ServicesDep,
    require_pass,
)
from sentinel_usage.api.models import (
    PERCENTILES,
    EndpointItem,
    EndpointsResponse,
    PassOverviewResponse,
    StatusCodeCount,
    StatusCodes,
    UsageBucket,
    UsageMetrics,
    UsageResponse,
    UsageRetention,
)
from sentinel_usage.api.responses import PROJECT_READ_ERRORS
from sentinel_usage.core.aggregate import UsageAggregate

router = APIRouter(tags=["usage"], responses=PROJECT_READ_ERRORS)

ERROR_RATE_WARNING = 0.05


# The zones this machine's tz database holds: the document lists them, so a client (or
# a fuzzer) knows the exact set, and the server accepts exactly that set.
ZONES: Final = frozenset(available_timezones())


def _zone_name(name: str) -> str:
    if name not in ZONES:
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'"
        )
    return name


ZoneName = Annotated[
    str,
    Query(
        description="IANA time zone of the buckets, e.g. Europe/Berlin",
        json_schema_extra={"enum": sorted(ZONES)},
    ),
    AfterValidator(_zone_name),
]


RangeQuery = Annotated[
    UsageRange,
    Query(alias="range", description="24h (hourly points), 7d or 30d (daily points)"),
]


@dataclass(frozen=True)
class RangeAsked:
    """The range a Usage tab figure covers: its length, the zone of its buckets, and
    the moment it ends at."""

    range: UsageRange
    zone: ZoneInfo
    now: datetime

    def bounds(self) -> tuple[datetime, datetime]:
        buckets = bucket_bounds(self.range, self.zone, self.now)
        return buckets[0].start, buckets[-1].end


async def range_asked(
    services: ServicesDep, tz: ZoneName = "UTC", range_: RangeQuery = UsageRange.DAY
) -> RangeAsked:
    return RangeAsked(range_, ZoneInfo(tz), services.clock.now())


RangeDep = Annotated[RangeAsked, Depends(range_asked)]


_CHOICE: Final = "|".join(str(p) for p in PERCENTILES)
PercentilesQuery = Annotated[
    str,
    Query(
        description="Latency percentiles to give, comma-separated, of "
        f"{', '.join(map(str, PERCENTILES))}: each as `pN_latency_ms` in `metrics` and in "
        "every bucket, the value at rank floor(N/100 * (n - 1)) of the sorted durations, "
        "within 1% of it (one mergeable sketch; never an average of percentiles). "
        "`p95_latency_ms` is always given.",
        pattern=rf"^({_CHOICE})(,({_CHOICE}))*$",
        examples=["50,95,99"],
    ),
]


@router.get(
    "/v1/projects/{project_id}/passes/{pass_id}/usage",
    response_model=UsageResponse,
    response_model_by_alias=True,
    # The percentiles not asked for are left out (every other field is always set).
    response_model_exclude_unset=True,
)
async def pass_usage(
    pass_id: PassIdPath,
    scope: ReadScopeDep,
    asked: RangeDep,
    services: ServicesDep,
    percentiles: PercentilesQuery = "95",
) -> UsageResponse:
    """Timeline (every bucket, zero-filled) and metrics over the range."""
    await require_pass(services, scope, pass_id)
    usage = services.analytics.usage
    report = await usage(scope, pass_id, asked.range, asked.zone, asked.now)
    extra = sorted({int(p) for p in percentiles.split(",")} - {95})
    return _usage_response(pass_id, report, extra)


@router.get(
    "/v1/projects/{project_id}/passes/{pass_id}/endpoints",
    response_model=EndpointsResponse,
    response_model_by_alias=True,
)
async def pass_endpoints(
    pass_id: PassIdPath,
    scope: ReadScopeDep,
    asked: RangeDep,
    services: ServicesDep,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 10,
) -> EndpointsResponse:
    """The pass's endpoints over the range of the usage timeline (the same `range` and
    `tz`), most requested first, and its status codes. Counts are exact; latencies
    within 1%."""
    await require_pass(services, scope, pass_id)
    start, end = asked.bounds()
    offset = (page - 1) * per_page
    found = await services.analytics.endpoints(scope, pass_id, start, end, per_page, offset)
    return EndpointsResponse(
        pass_id=pass_id,
        range=asked.range.value,
        tz=asked.zone.key,
        from_=start,
        to=end,
        items=[
            EndpointItem(
                endpoint=e.endpoint,
                total_requests=e.total_requests,
                error_count=e.error_count,
                error_rate=e.error_rate,
                avg_latency_ms=round(e.avg_latency_ms, 3),
                p95_latency_ms=_round(e.p95_latency_ms),
            )
            for e in found.items
        ],
        page=page,
        per_page=per_page,
        total=found.total,
        status_codes=StatusCodes(
            classes=found.status_classes(),
            top=[StatusCodeCount(status_code=c, count=n) for c, n in found.top_codes()],
        ),
    )


@router.get(
    "/v1/projects/{project_id}/passes/{pass_id}/overview",
    response_model=PassOverviewResponse,
)
async def pass_overview(
    pass_id: PassIdPath, scope: ReadScopeDep, services: ServicesDep, analytics: AnalyticsDep
) -> PassOverviewResponse:
    """Lifetime totals (within the retention) and when the pass was last used."""
    await require_pass(services, scope, pass_id)
    overview = await analytics.overview(scope, pass_id)
    return PassOverviewResponse(
        pass_id=pass_id,
        total_requests=overview.total_requests,
        success_rate=(
            overview.success_count / overview.total_requests if overview.total_requests else None
        ),
        avg_latency_ms=_round(
            overview.latency_sum_ms / overview.latency_count if overview.latency_count else None
        ),
        last_used_at=overview.last_used_at,
    )


def _percentiles(usage: UsageAggregate, extra: list[int]) -> dict[str, float | None]:
    return {f"p{p}_latency_ms": _round(usage.latency_percentile_ms(p)) for p in extra}


def _usage_response(pass_id: str, report: UsageReport, extra: list[int]) -> UsageResponse:
    total = report.total
    return UsageResponse(
        pass_id=pass_id,
        range=report.range.value,
        tz=report.zone.key,
        granularity=report.range.granularity,
        from_=report.start,
        to=report.end,
        timeline=[
            UsageBucket(
                bucket_start=b.bucket.start,
                bucket_end=b.bucket.end,
                partial=b.partial,
                total_requests=b.usage.total_requests,
                success_count=b.usage.success_count,
                error_count=b.usage.error_count,
                success_rate=b.usage.success_rate,
                avg_latency_ms=_round(b.usage.avg_latency_ms),
                p95_latency_ms=_round(b.usage.p95_latency_ms),
                **_percentiles(b.usage, extra),
            )
            for b in report.buckets
        ],
        metrics=UsageMetrics(
            total_requests=total.total_requests,
            success_count=total.success_count,
            error_count=total.error_count,
            success_rate=total.success_rate,
            error_rate=total.error_rate,
            error_rate_warning=(total.error_rate or 0.0) > ERROR_RATE_WARNING,
            avg_latency_ms=_round(total.avg_latency_ms),
            avg_latency_level=latency_level(total.avg_latency_ms),
            p95_latency_ms=_round(total.p95_latency_ms),
            unique_endpoints=total.unique_endpoints,
            token_generations=total.token_generations,
            token_failures=total.token_failures,
            **_percentiles(total, extra),
        ),
        # What the rollup tiers' TTLs still hold: a range that reaches past it is
        # said to be partial, never a silently smaller number.
        retention=UsageRetention(
            days=report.retention.days,
            held_from=report.retention.held_from,
            partial=report.retention.partial,
        ),
        last_updated=report.generated_at,
    )


def latency_level(avg_ms: float | None) -> str | None:
    """The seed's colour coding: green < 200 ms, yellow 200-500 ms, red > 500 ms."""
    if avg_ms is None:
        return None
    if avg_ms < 200:
        return "green"
    return "yellow" if avg_ms <= 500 else "red"


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None
