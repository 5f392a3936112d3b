"""Request dependencies as Annotated aliases (tests override them on the app)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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


def get_services(request: Request) -> ApiServices:
    services: ApiServices = request.app.state.services
    return services


ServicesDep = Annotated[ApiServices, Depends(get_services)]


def get_principal(
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


def require_scope(scope: str) -> Callable[[Principal], Principal]:
    def check(principal: PrincipalDep) -> Principal:
        if scope not in principal.scopes:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"token lacks the '{scope}' scope",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope" scope="{scope}"'},
            )
        return principal

    return check


UsageReader = Annotated[Principal, Depends(require_scope("usage:read"))]
EventWriter = Annotated[Principal, Depends(require_scope("events:write"))]

ProjectIdPath = Annotated[str, Path(min_length=1, max_length=128)]


def project_scope_for(scope: str) -> Callable[[str, Principal], ProjectScope]:
    """The ProjectScope of the path's project, after the scope check; a project the
    token does not grant is indistinguishable from one that does not exist (404)."""
    checker = require_scope(scope)

    def build(project_id: ProjectIdPath, principal: PrincipalDep) -> ProjectScope:
        checker(principal)
        if not principal.can_access(project_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
        return ProjectScope(project_id)

    return build


ReadScopeDep = Annotated[ProjectScope, Depends(project_scope_for("usage:read"))]
