"""Error-rate alerts of a project, or of one pass."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query

from sentinel_usage.api.deps import (
    AnalyticsDep,
    PassIdPath,
    ReadScopeDep,
    ServicesDep,
    require_pass,
)
from sentinel_usage.api.models import AlertItem, AlertListResponse
from sentinel_usage.api.responses import PROJECT_READ_ERRORS
from sentinel_usage.core.alerts import AlertEvent

router = APIRouter(tags=["alerts"], responses=PROJECT_READ_ERRORS)


class AlertState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


StateQuery = Annotated[AlertState | None, Query(description="firing or resolved")]
LimitQuery = Annotated[int, Query(ge=1, le=1000)]


@router.get("/v1/projects/{project_id}/alerts", response_model=AlertListResponse)
async def project_alerts(
    scope: ReadScopeDep,
    analytics: AnalyticsDep,
    state: StateQuery = None,
    limit: LimitQuery = 100,
) -> AlertListResponse:
    """The project's alerts, most recently fired first."""
    alerts = await analytics.alerts(scope, None, state.value if state else None, limit)
    return AlertListResponse(items=[_item(a) for a in alerts])


@router.get(
    "/v1/projects/{project_id}/passes/{pass_id}/alerts",
    response_model=AlertListResponse,
)
async def pass_alerts(
    pass_id: PassIdPath,
    scope: ReadScopeDep,
    services: ServicesDep,
    analytics: AnalyticsDep,
    state: StateQuery = None,
    limit: LimitQuery = 100,
) -> AlertListResponse:
    """One pass's alerts, most recently fired first."""
    await require_pass(services, scope, pass_id)
    alerts = await analytics.alerts(scope, pass_id, state.value if state else None, limit)
    return AlertListResponse(items=[_item(a) for a in alerts])


def _item(alert: AlertEvent) -> AlertItem:
    return AlertItem(**vars(alert))
