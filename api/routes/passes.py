"""The pass registry: create (the secret shown once), list, read, edit, regenerate,
pause, revoke, delete, and each pass's audit trail."""

from __future__ import annotations

import json
import shlex
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Final

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response, status

from sentinel_usage.analytics.scope import ProjectScope
from sentinel_usage.api.deps import (
    AnalyticsDep,
    PassesReadScopeDep,
    PassesWriteScopeDep,
    PassIdPath,
    PrincipalDep,
    ServicesDep,
)
from sentinel_usage.api.models import (
    AuditItem,
    AuditResponse,
    CredentialFormats,
    PassCard,
    PassCardsResponse,
    PassCredentials,
    PassView,
    UnmanagedPass,
)
from sentinel_usage.api.responses import NO_STORE, PROJECT_READ_ERRORS, error_responses
from sentinel_usage.core.windows import EPOCH
from sentinel_usage.passes.credentials import IssuedSecret
from sentinel_usage.passes.model import PassCreate, PassStatus, PassUpdate
from sentinel_usage.passes.store import PassConflictError, PassNotFoundError

router = APIRouter(tags=["passes"], responses=PROJECT_READ_ERRORS)

LIST_CURSOR: Final = r"^[0-9]{1,16}\.SP-[0-9]{4}-[A-Z0-9]{6}$"
UNMANAGED_SCAN: Final = 1_000  # most recently used pass ids looked at for `unmanaged`


class PassStateFilter(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    REVOKED = "revoked"


def _not_found() -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, "not found")


def _credentials(request: Request, view: PassView, secret: IssuedSecret) -> PassCredentials:
    token_url = str(request.url_for("token"))
    document = {
        "client_id": view.client_id,
        "client_secret": secret.secret,
        "token_url": token_url,
        "pass_id": view.pass_id,
    }
    bash = "\n".join(
        f"export {name}={shlex.quote(value)}"
        for name, value in (
            ("SENTINEL_CLIENT_ID", view.client_id),
            ("SENTINEL_CLIENT_SECRET", secret.secret),
            ("SENTINEL_TOKEN_URL", token_url),
        )
    )
    return PassCredentials(
        sentinel_pass=view,
        client_id=view.client_id,
        client_secret=secret.secret,
        token_url=token_url,
        formats=CredentialFormats(json_text=json.dumps(document, indent=2), bash=bash),
    )


@router.post(
    "/v1/projects/{project_id}/passes",
    status_code=status.HTTP_201_CREATED,
    response_model=PassCredentials,
    responses={
        201: {"description": "The pass and its credentials: the secret is shown this once."},
        **error_responses(400, 409),
    },
)
async def create_pass(
    request: Request,
    response: Response,
    scope: PassesWriteScopeDep,
    principal: PrincipalDep,
    services: ServicesDep,
    spec: Annotated[PassCreate, Body()],
) -> PassCredentials:
    """Create a pass. Copy `client_secret` now: it is stored only as a hash."""
    try:
        created, secret = await services.registry.store.create(
            scope.project_id, spec, principal.subject
        )
    except PassConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    response.headers.update(NO_STORE)
    return _credentials(request, PassView.of(created), secret)


@router.get("/v1/projects/{project_id}/passes", response_model=PassCardsResponse)
async def list_passes(
    scope: PassesReadScopeDep,
    services: ServicesDep,
    analytics: AnalyticsDep,
    search: Annotated[
        str | None, Query(max_length=100, description="Agent name (any part) or pass ID (start).")
    ] = None,
    state: Annotated[
        PassStateFilter | None, Query(description="active, inactive or revoked")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None,
        Query(max_length=64, description="next_cursor of the page before.", pattern=LIST_CURSOR),
    ] = None,
) -> PassCardsResponse:
    """The project's passes, newest first, each with its last-24h usage (one analytics
    query per page). Pass ids seen only in events are listed apart, on the first page."""
    after = _decode_list_cursor(cursor) if cursor else None
    page = await services.registry.store.page(
        scope.project_id,
        limit=limit,
        after=after,
        search=search,
        status=state.value if state else None,
    )
    now = services.clock.now()
    usage = {
        s.pass_id: s
        for s in await analytics.pass_summaries(scope, now, [p.pass_id for p in page.items])
    }
    unmanaged = [] if cursor or state else await _unmanaged(services, scope, search)
    return PassCardsResponse(
        project_id=scope.project_id,
        items=[PassCard.of(p, usage.get(p.pass_id)) for p in page.items],
        next_cursor=_encode_list_cursor(page.next_after) if page.next_after else None,
        unmanaged=unmanaged,
    )


async def _unmanaged(
    services: ServicesDep, scope: ProjectScope, search: str | None
) -> list[UnmanagedPass]:
    # The most recently used only: a project whose passes the registry manages does not
    # pay for a scan of all its passes' activity on every first page.
    summaries = await services.analytics.pass_summaries(
        scope, services.clock.now(), None, UNMANAGED_SCAN
    )
    if search:
        summaries = [s for s in summaries if s.pass_id.upper().startswith(search.upper())]
    ids = [s.pass_id for s in summaries]
    store = services.registry.store
    known = await store.known(scope.project_id, ids) | await store.deleted_among(
        scope.project_id, ids
    )
    return [
        UnmanagedPass(**UnmanagedPass.usage_fields(s.pass_id, s))
        for s in summaries
        if s.pass_id not in known
    ][:200]


@router.get("/v1/projects/{project_id}/passes/{pass_id}", response_model=PassView)
async def get_pass(
    pass_id: PassIdPath, scope: PassesReadScopeDep, services: ServicesDep
) -> PassView:
    """The pass's detail (its client ID, never its secret)."""
    try:
        return PassView.of(await services.registry.store.get(scope.project_id, pass_id))
    except PassNotFoundError:
        raise _not_found() from None


@router.patch(
    "/v1/projects/{project_id}/passes/{pass_id}",
    response_model=PassView,
    responses={
        **error_responses(400, 409),
        409: {**error_responses(409)[409], "description": "The dates would be out of order."},
    },
)
async def update_pass(
    pass_id: PassIdPath,
    scope: PassesWriteScopeDep,
    principal: PrincipalDep,
    services: ServicesDep,
    update: Annotated[PassUpdate, Body()],
) -> PassView:
    """Edit metadata and scopes. New scopes apply at the next token exchange; tokens
    already issued keep theirs until they expire."""
    try:
        changed = await services.registry.store.update(
            scope.project_id, pass_id, update, principal.subject
        )
    except PassNotFoundError:
        raise _not_found() from None
    except PassConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return PassView.of(changed)


@router.post(
    "/v1/projects/{project_id}/passes/{pass_id}/regenerate", response_model=PassCredentials
)
async def regenerate_credentials(
    request: Request,
    response: Response,
    pass_id: PassIdPath,
    scope: PassesWriteScopeDep,
    principal: PrincipalDep,
    services: ServicesDep,
) -> PassCredentials:
    """A new secret, shown this once; the old one, and every token issued under it, stop
    working at once."""
    try:
        rotated, secret = await services.registry.store.regenerate(
            scope.project_id, pass_id, principal.subject
        )
    except PassNotFoundError:
        raise _not_found() from None
    response.headers.update(NO_STORE)
    return _credentials(request, PassView.of(rotated), secret)


async def _transition(
    services: ServicesDep, scope: ProjectScope, pass_id: str, subject: str, action: str
) -> PassView:
    store = services.registry.store
    try:
        if action == "revoke":
            return PassView.of(await store.revoke(scope.project_id, pass_id, subject))
        target = PassStatus.ACTIVE if action == "activate" else PassStatus.INACTIVE
        return PassView.of(await store.set_status(scope.project_id, pass_id, target, subject))
    except PassNotFoundError:
        raise _not_found() from None


@router.post("/v1/projects/{project_id}/passes/{pass_id}/activate", response_model=PassView)
async def activate_pass(
    pass_id: PassIdPath, scope: PassesWriteScopeDep, principal: PrincipalDep, services: ServicesDep
) -> PassView:
    """Active again (also after a revocation): exchanges work again."""
    return await _transition(services, scope, pass_id, principal.subject, "activate")


@router.post("/v1/projects/{project_id}/passes/{pass_id}/deactivate", response_model=PassView)
async def deactivate_pass(
    pass_id: PassIdPath, scope: PassesWriteScopeDep, principal: PrincipalDep, services: ServicesDep
) -> PassView:
    """Paused: exchanges fail; tokens already issued stay valid until they expire."""
    return await _transition(services, scope, pass_id, principal.subject, "deactivate")


@router.post("/v1/projects/{project_id}/passes/{pass_id}/revoke", response_model=PassView)
async def revoke_pass(
    pass_id: PassIdPath, scope: PassesWriteScopeDep, principal: PrincipalDep, services: ServicesDep
) -> PassView:
    """Inactive with `revoked_at`, and its tokens refused at once; the record and its usage
    history stay (`activate` re-enables it)."""
    return await _transition(services, scope, pass_id, principal.subject, "revoke")


@router.delete(
    "/v1/projects/{project_id}/passes/{pass_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={204: {"description": "Deleted: its tokens are refused at once."}},
)
async def delete_pass(
    pass_id: PassIdPath, scope: PassesWriteScopeDep, principal: PrincipalDep, services: ServicesDep
) -> Response:
    """The pass is gone and its tokens are invalid at once. Its activity rows stay in the
    analytics store until the retention ends (auditors may need them)."""
    try:
        await services.registry.store.delete(scope.project_id, pass_id, principal.subject)
    except PassNotFoundError:
        raise _not_found() from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


AuditLimit = Annotated[int, Query(ge=1, le=200)]
# At most 18 digits: every such number is a 64-bit integer, as the store's ids are (19
# digits reach past 2**63 - 1, and the database refused the parameter: a 500, found by
# Schemathesis).
AuditCursor = Annotated[
    str | None, Query(max_length=18, pattern=r"^[0-9]{1,18}$", description="next_cursor")
]


@router.get("/v1/projects/{project_id}/passes/{pass_id}/audit", response_model=AuditResponse)
async def pass_audit(
    pass_id: PassIdPath,
    scope: PassesReadScopeDep,
    services: ServicesDep,
    limit: AuditLimit = 50,
    cursor: AuditCursor = None,
) -> AuditResponse:
    """The pass's lifecycle actions, newest first. Once the pass is deleted, its trail is
    at `/v1/projects/{project_id}/audit?pass_id=`."""
    if await services.registry.store.standing(scope.project_id, pass_id) != "present":
        raise _not_found()
    return await _audit_page(services, scope, pass_id, limit, cursor)


@router.get("/v1/projects/{project_id}/audit", response_model=AuditResponse)
async def project_audit(
    scope: PassesReadScopeDep,
    services: ServicesDep,
    pass_id: Annotated[str | None, Query(max_length=128, description="One pass only.")] = None,
    limit: AuditLimit = 50,
    cursor: AuditCursor = None,
) -> AuditResponse:
    """Every lifecycle action in the project (created, scopes changed, regenerated,
    paused, revoked, deleted), newest first, with who and when: deleted passes' too."""
    return await _audit_page(services, scope, pass_id, limit, cursor)


async def _audit_page(
    services: ServicesDep, scope: ProjectScope, pass_id: str | None, limit: int, cursor: str | None
) -> AuditResponse:
    entries = await services.registry.store.audit(
        scope.project_id, pass_id, limit=limit + 1, before=int(cursor) if cursor else None
    )
    items = entries[:limit]
    return AuditResponse(
        items=[AuditItem(**vars(e)) for e in items],
        next_cursor=str(items[-1].id) if len(entries) > limit else None,
    )


def _encode_list_cursor(after: tuple[datetime, str]) -> str:
    created_at, pass_id = after
    return f"{(created_at - EPOCH) // timedelta(microseconds=1)}.{pass_id}"


def _decode_list_cursor(text: str) -> tuple[datetime, str]:
    micros, pass_id = text.split(".", 1)
    return EPOCH + timedelta(microseconds=int(micros)), pass_id
