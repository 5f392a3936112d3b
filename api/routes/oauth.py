"""OAuth 2.0 for passes: the token endpoint (RFC 6749 §4.4), the JWKS that verifies its
tokens, and introspection (RFC 7662). Every exchange by a known client is a
`token_generation` usage event, recorded without ever slowing the exchange."""

from __future__ import annotations

import time
import uuid
from ipaddress import ip_address
from typing import Annotated, Any, Final
from urllib.parse import parse_qsl

import structlog
from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import JSONResponse
from prometheus_client import Counter

from sentinel_usage.api.auth import Principal
from sentinel_usage.api.deps import ServicesDep, require_scope
from sentinel_usage.api.responses import NO_STORE, error_responses
from sentinel_usage.core.events import UsageEvent
from sentinel_usage.passes.model import SCOPE_PATTERN, SentinelPass
from sentinel_usage.passes.oauth import GRANT_TYPE, Exchange, OAuthError

router = APIRouter(tags=["oauth"])
log = structlog.get_logger(__name__)

TOKEN_PATH: Final = "/oauth/token"  # noqa: S105 - a path
MAX_FORM_BYTES: Final = 8 * 1024
EVENTS_UNRECORDED = Counter(
    "sentinel_oauth_events_unrecorded", "Exchanges whose usage event could not be built."
)
EXCHANGES = Counter(
    "sentinel_oauth_exchanges", "Token exchanges by outcome (an RFC 6749 error code).", ["outcome"]
)

_SCOPE_LIST: Final = f"^{SCOPE_PATTERN.pattern}( {SCOPE_PATTERN.pattern})*$"
TOKEN_PARAMETERS: Final = ("grant_type", "scope", "client_id", "client_secret")
INTROSPECTION_PARAMETERS: Final = ("token", "token_type_hint")


def _form_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object", **schema}}},
    }


# RFC 6749 §3.2: unknown parameters are ignored, so the schema allows them.
_TOKEN_BODY: Final = _form_body(
    {
        "required": ["grant_type"],
        "properties": {
            "grant_type": {"type": "string", "enum": [GRANT_TYPE]},
            "scope": {"type": "string", "pattern": _SCOPE_LIST},
            "client_id": {"type": "string", "description": "client_secret_post only"},
            "client_secret": {"type": "string", "description": "client_secret_post only"},
        },
    }
)
_INTROSPECTION_BODY: Final = _form_body(
    {
        "required": ["token"],
        "properties": {
            "token": {"type": "string", "minLength": 1},
            "token_type_hint": {"type": "string"},
        },
    }
)
_OAUTH_ERROR = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {"type": "string"},
                    "error_description": {"type": "string"},
                },
            }
        }
    }
}


async def _form(request: Request, known: tuple[str, ...]) -> dict[str, str]:
    """The `known` parameters of the urlencoded body (RFC 6749 §3.2: others are ignored,
    an empty one is as if absent, one given twice is an error)."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise OAuthError("invalid_request", f"body exceeds {MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "malformed form body") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name not in known or value == "":
            continue
        if name in form:
            raise OAuthError("invalid_request", f"parameter {name!r} given more than once")
        form[name] = value
    return form


def _error_response(error: OAuthError, basic: bool) -> JSONResponse:
    headers = dict(NO_STORE)
    if error.status == 401:
        scheme = 'Basic realm="sentinel-passes"' if basic else 'Bearer realm="sentinel-passes"'
        headers["WWW-Authenticate"] = f'{scheme}, error="{error.error}"'
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return JSONResponse(
        {"error": error.error, "error_description": error.description},
        status_code=error.status,
        headers=headers,
    )


@router.post(
    TOKEN_PATH,
    name="token",
    openapi_extra={"requestBody": _TOKEN_BODY},
    responses={
        200: {"description": "An access token (RFC 6749 §5.1)."},
        400: {**_OAUTH_ERROR, "description": "RFC 6749 §5.2 error."},
        401: {**_OAUTH_ERROR, "description": "invalid_client."},
        429: {**_OAUTH_ERROR, "description": "Too many failed exchanges; see Retry-After."},
    },
)
async def token(request: Request, services: ServicesDep) -> JSONResponse:
    """`grant_type=client_credentials`, the client authenticated by HTTP Basic
    (`client_secret_basic`) or by `client_id`/`client_secret` in the body
    (`client_secret_post`); optional `scope`, a subset of the pass's scopes."""
    started = time.perf_counter()
    authorization = request.headers.get("authorization")
    try:
        form = await _form(request, TOKEN_PARAMETERS)
    except OAuthError as error:
        outcome = Exchange(None, error=error)
    else:
        outcome = await services.registry.grant.exchange(authorization, form)
    if outcome.error is not None:
        basic = bool(authorization and authorization[:6].lower() == "basic ")
        response = _error_response(outcome.error, basic)
    else:
        assert outcome.token is not None
        response = JSONResponse(
            {
                "access_token": outcome.token.access_token,
                "token_type": "Bearer",
                "expires_in": outcome.token.expires_in,
                "scope": outcome.token.scope,
            },
            headers=NO_STORE,
        )
    EXCHANGES.labels(outcome.error.error if outcome.error else "issued").inc()
    if outcome.sentinel_pass is not None:
        try:
            _record(services, request, outcome, response.status_code, started)
        except ValueError as exc:  # an event that does not validate must not fail the exchange
            EVENTS_UNRECORDED.inc()
            log.error("token_event_unrecorded", error=str(exc))
    return response


def _record(
    services: ServicesDep, request: Request, outcome: Exchange, status_code: int, started: float
) -> None:
    """The exchange as a `token_generation` event, handed to the non-blocking producer."""
    sentinel_pass: SentinelPass | None = outcome.sentinel_pass
    assert sentinel_pass is not None
    error = outcome.error
    event = UsageEvent(
        event_id=uuid.uuid4(),
        project_id=sentinel_pass.project_id,
        pass_id=sentinel_pass.pass_id,
        client_id=sentinel_pass.client_id,
        activity_type="token_generation",
        started_at=services.clock.now(),
        endpoint=TOKEN_PATH,
        http_method="POST",
        status_code=status_code,
        success=error is None,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
        client_ip=_client_ip(request),
        user_agent=(request.headers.get("user-agent") or "")[:1024] or None,
        error_message=f"{error.error}: {error.description}" if error else None,
    )
    services.token_events.record(event)


def _client_ip(request: Request) -> str | None:
    host = request.client.host if request.client else None
    try:
        return ip_address(host).compressed if host else None
    except ValueError:  # a test client's "testclient", a unix socket
        return None


@router.get("/.well-known/jwks.json", name="jwks")
async def jwks(services: ServicesDep) -> JSONResponse:
    """The public keys that verify pass access tokens (two during a rotation)."""
    return JSONResponse(
        services.registry.issuer.keys.jwks(), headers={"Cache-Control": "max-age=300"}
    )


IntrospectionCaller = Annotated[Principal, Depends(require_scope("passes:read"))]


@router.post(
    "/oauth/introspect",
    openapi_extra={"requestBody": _INTROSPECTION_BODY},
    responses={
        200: {"description": "RFC 7662 §2.2: `active`, and the token's claims when active."},
        400: {**_OAUTH_ERROR, "description": "invalid_request: no token, or not a form."},
        **error_responses(401, 403),
    },
)
async def introspect(
    request: Request, caller: IntrospectionCaller, services: ServicesDep
) -> JSONResponse:
    """`token=<access token>`. The caller (a gateway, with a dashboard token holding
    `passes:read`) learns about tokens of the projects its own token grants only."""
    try:
        form = await _form(request, INTROSPECTION_PARAMETERS)
    except OAuthError as error:
        return _error_response(error, basic=False)
    token_text = form.get("token")
    if not token_text:
        return _error_response(OAuthError("invalid_request", "token is required"), basic=False)
    answer: dict[str, Any] = await services.registry.introspect(token_text, caller.projects)
    return JSONResponse(answer, status_code=status.HTTP_200_OK, headers=NO_STORE)
