"""The pass pages (static HTML and JavaScript served from the package: the project's
passes, and a pass's detail view with its four tabs) and, in local mode only, a sign-in
that mints a token for the pages."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Final

from fastapi import APIRouter, Body, HTTPException, Request, status
from fastapi.responses import FileResponse

from sentinel_usage.api.auth import issue_token
from sentinel_usage.api.deps import ServicesDep
from sentinel_usage.core.events import Identifier
from sentinel_usage.core.settings import is_loopback

STATIC = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(include_in_schema=False)
# What the pages need: manage the project's passes and read and export their usage.
PAGE_SCOPES: Final = ["passes:read", "passes:write", "usage:read", "usage:export"]


class PassTab(StrEnum):
    """The detail view's tabs: each has its own URL, so that a link opens it."""

    OVERVIEW = "overview"
    PERMISSIONS = "permissions"
    USAGE = "usage"
    SETTINGS = "settings"


TABS: Final = frozenset(tab.value for tab in PassTab)


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})


@router.get("/ui/projects/{project_id}")
async def passes_page(project_id: str) -> FileResponse:
    return _page("index.html")


@router.get("/ui/projects/{project_id}/passes/{pass_id}")
async def pass_page(project_id: str, pass_id: str) -> FileResponse:
    return _page("pass.html")


@router.get("/ui/projects/{project_id}/passes/{pass_id}/{tab}")
async def pass_tab_page(project_id: str, pass_id: str, tab: str) -> FileResponse:
    if tab not in TABS:  # a page that does not exist, not a malformed request
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    return _page("pass.html")


@router.get("/ui/config")
async def ui_config(services: ServicesDep) -> dict[str, bool]:
    return {"local_sign_in": _local_sign_in(services)}


@router.post("/ui/local-token")
async def local_token(
    request: Request,
    services: ServicesDep,
    project_id: Annotated[Identifier, Body(embed=True)],
) -> dict[str, str]:
    """Local mode only, and only to a client on this machine: a token for the one
    project the page shows, with the scopes the pages use and nothing more."""
    secret = services.settings.jwt_secret
    client = request.client.host if request.client else ""
    if not _local_sign_in(services) or secret is None or not is_loopback(client):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    token = issue_token(
        secret.get_secret_value(),
        [project_id],
        PAGE_SCOPES,
        ttl_seconds=8 * 3600,
        subject="local-ui",
        audience=services.settings.jwt_audience,
    )
    return {"token": token}


def _local_sign_in(services: ServicesDep) -> bool:
    settings = services.settings
    return settings.mode == "local" and settings.jwt_secret is not None
