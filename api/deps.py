"""Request dependencies as Annotated aliases (tests override them on the app)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sentinel_usage.analytics.facade import Analytics
from sentinel_usage.analytics.scope import ProjectScope
from sentinel_usage.api.auth import AuthenticationError, Principal
from sentinel_usage.api.services import ApiServices

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    bearerFormat="JWT",
    description="A JWT whose `projects` claim lists the projects it grants and whose "
    "`scope` claim holds `usage:read`, `usage:export` and/or `events:write`.",
)


# The dependencies are `async def` though they never wait: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop per dependency per request (most of the
# dependencies' time under load in `up`, measured with py-spy).


async def get_services(request: Request) -> ApiServices:
    services: ApiServices = request.app.state.services
    return services


ServicesDep = Annotated[ApiServices, Depends(get_services)]


async def get_analytics(services: ServicesDep) -> Analytics:
    return services.analytics


AnalyticsDep = Annotated[Analytics, Depends(get_analytics)]


async def get_principal(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        return services.verifier.verify(credentials.credentials)
    except AuthenticationError as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            str(exc),
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_scope(scope: str, *alternatives: str) -> Callable[[Principal], Awaitable[Principal]]:
    """The token must hold `scope` (or one of `alternatives`)."""

    async def check(principal: PrincipalDep) -> Principal:
        return _with_scope(principal, scope, *alternatives)

    return check


def _with_scope(principal: Principal, scope: str, *alternatives: str) -> Principal:
    accepted = (scope, *alternatives)
    if principal.scopes.isdisjoint(accepted):
        needed = " or ".join(f"'{s}'" for s in accepted)
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"token lacks the {needed} scope",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope" scope="{scope}"'},
        )
    return principal


UsageReader = Annotated[Principal, Depends(require_scope("usage:read"))]
EventWriter = Annotated[Principal, Depends(require_scope("events:write"))]

ProjectIdPath = Annotated[str, Path(min_length=1, max_length=128)]
PassIdPath = Annotated[str, Path(min_length=1, max_length=128)]


def project_scope_for(
    scope: str, *alternatives: str
) -> Callable[[str, Principal], Awaitable[ProjectScope]]:
    """The ProjectScope of the path's project, after the scope check; a project the
    token does not grant is indistinguishable from one that does not exist (404)."""

    async def build(project_id: ProjectIdPath, principal: PrincipalDep) -> ProjectScope:
        _with_scope(principal, scope, *alternatives)
        if not principal.can_access(project_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
        return ProjectScope(project_id)

    return build


ReadScopeDep = Annotated[ProjectScope, Depends(project_scope_for("usage:read"))]


async def require_pass(services: ApiServices, scope: ProjectScope, pass_id: str) -> None:
    """404 unless the registry holds the pass, or (a pass managed elsewhere) it has
    activity or rollups in the project. A pass deleted from the registry is gone everywhere: its
    rows age out with the retention, no route serves them (the seeds: deletion removes
    the pass and what is associated with it)."""
    standing = await services.registry.store.standing(scope.project_id, pass_id)
    if standing == "present":
        return
    if standing == "deleted" or not await services.analytics.pass_exists(scope, pass_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")


PassesReadScopeDep = Annotated[
    ProjectScope, Depends(project_scope_for("passes:read", "usage:read"))
]
PassesWriteScopeDep = Annotated[ProjectScope, Depends(project_scope_for("passes:write"))]
