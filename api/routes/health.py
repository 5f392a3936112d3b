"""Liveness and readiness. (Metrics have a listener of their own: cli serve_metrics.)"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from sentinel_usage.api.deps import ServicesDep
from sentinel_usage.api.models import ReadinessResponse

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get(
    "/readyz", response_model=ReadinessResponse, responses={503: {"model": ReadinessResponse}}
)
async def readyz(services: ServicesDep) -> JSONResponse:
    """Broker and ClickHouse reachable, migrations applied; 503 says what is missing."""
    checks = await services.readiness()
    ready = all(v == "ok" for v in checks.values())
    body = ReadinessResponse(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
