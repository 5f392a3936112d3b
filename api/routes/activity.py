"""GET the activity log of one pass."""

from __future__ import annotations

import asyncio
from enum import IntEnum
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from sentinel_usage.api.deps import ReadScopeDep, ServicesDep
from sentinel_usage.api.models import ActivityPageResponse, ActivityRow, ErrorResponse

router = APIRouter(tags=["activity"])

PassIdPath = Annotated[str, Path(min_length=1, max_length=128)]


class PerPage(IntEnum):
    """Rows per page (seed: 10, 25, 50 or 100; 25 by default)."""

    TEN = 10
    TWENTY_FIVE = 25
    FIFTY = 50
    HUNDRED = 100


@router.get(
    "/v1/projects/{project_id}/passes/{pass_id}/activity",
    response_model=ActivityPageResponse,
    responses={404: {"model": ErrorResponse}, 401: {"model": ErrorResponse}},
)
async def list_activity(
    pass_id: PassIdPath,
    scope: ReadScopeDep,
    services: ServicesDep,
    page: Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1.")] = 1,
    per_page: Annotated[
        PerPage, Query(description="Rows per page: 10, 25, 50 or 100.")
    ] = PerPage.TWENTY_FIVE,
) -> ActivityPageResponse:
    """The pass's activity, newest first (ties broken by event_id)."""
    result = await asyncio.to_thread(services.activity.page, scope, pass_id, page, int(per_page))
    if result.total == 0 and not await asyncio.to_thread(
        services.activity.pass_exists, scope, pass_id
    ):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    return ActivityPageResponse(
        items=[ActivityRow(**row) for row in result.items],
        page=page,
        per_page=int(per_page),
        total=result.total,
    )
