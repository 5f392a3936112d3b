"""SentinelGateway: a pure ASGI middleware that any Starlette or FastAPI service mounts in
one line. It admits a request only with a valid pass access token, enforces the route's
scope (RFC 6750 answers), and records every call it admits as an `api_request` event:
the route template the router matched, the status, the time from the request's arrival
to the response's last byte, the client. The request path never waits on Kafka."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Sequence
from ipaddress import ip_address, ip_network
from typing import Any, Final, NamedTuple, Protocol

import orjson
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sentinel_usage.core.clock import SYSTEM_CLOCK, Clock
from sentinel_usage.core.endpoints import normalise_endpoint
from sentinel_usage.core.event_ids import EventIds
from sentinel_usage.core.events import MAX_ERROR_MESSAGE_CHARS, MAX_USER_AGENT_CHARS
from sentinel_usage.gateway.feed import UNKNOWN, PassFeed
from sentinel_usage.gateway.tokens import AccessTokenVerifier, InvalidTokenError, PassToken

RouteScopes = Callable[[str, str], str | None]  # (method, route template) -> scope needed
READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def grants(scopes: frozenset[str], needed: str) -> bool:
    """`read:data` is granted by `read:data` itself or by the broader `read` (the seeds'
    default permissions are `read,write`)."""
    return needed in scopes or needed.split(":", 1)[0] in scopes


def scope_for_method(method: str) -> str:
    """The default rule: reading needs `read:data`, anything else `write:data`."""
    return "read:data" if method in READ_METHODS else "write:data"


class EventSink(Protocol):
    """What the gateway hands events to: GatewayProducer (bounded, never blocks)."""

    def record_wire(self, pass_id: str, wire: dict[str, Any]) -> bool: ...


class SentinelGateway:
    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: AccessTokenVerifier,
        feed: PassFeed,
        events: EventSink,
        route_scopes: RouteScopes | None = None,
        trusted_proxies: Iterable[str] = (),
        realm: str = "sentinel",
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.app = app
        self._verifier = verifier
        self._feed = feed
        self._events = events
        self._route_scopes = route_scopes
        self._trusted = [ip_network(p) for p in trusted_proxies]
        self._realm = realm
        self._clock = clock
        self._event_ids = EventIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived = time.perf_counter()
        started_at = self._clock.now()
        caller = _caller(scope)
        token = caller.token
        if token is None:
            await self._refuse(send, 401, f'Bearer realm="{self._realm}"', None, None)
            return
        # The common case, a token seen before of a pass the feed knows, costs no await.
        claims = self._verifier.cached(token)
        if claims is None:
            try:
                claims = await self._verifier.verify(token)
            except InvalidTokenError as exc:
                await self._refuse(
                    send,
                    401,
                    self._challenge("invalid_token", str(exc)),
                    *_body("invalid_token", str(exc)),
                )
                return
        refusal = self._feed.known_refusal(claims)
        if refusal is UNKNOWN:
            refusal = await self._feed.refusal(token, claims)
        if refusal is not None:
            challenge = self._challenge("invalid_token", refusal)
            await self._refuse(send, 401, challenge, *_body("invalid_token", refusal))
            return
        method = scope["method"]
        # With the default rule the route is not needed before the call: the router
        # leaves it in the scope (scope["route"]), read afterwards at no cost.
        template = self._template(scope) if self._route_scopes is not None else None
        needed = (
            scope_for_method(method)
            if self._route_scopes is None
            else self._route_scopes(method, template or "")
        )
        if needed is not None and not grants(claims.scopes, needed):
            template = template or self._template(scope)
            description = f"this route needs the {needed} scope"
            challenge = self._challenge("insufficient_scope", description, needed)
            await self._refuse(send, 403, challenge, *_body("insufficient_scope", description))
            self._record(scope, caller, claims, template, 403, arrived, started_at, description)
            return
        await self._admit(scope, receive, send, caller, claims, template, arrived, started_at)

    async def _admit(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        caller: Caller,
        claims: PassToken,
        template: str | None,
        arrived: float,
        started_at: Any,
    ) -> None:
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except Exception as exc:
            # Recorded as the 500 the caller sees, then raised for the server to handle.
            route = template or self._routed(scope)
            self._record(scope, caller, claims, route, 500, arrived, started_at, repr(exc))
            raise
        error = "server error" if status >= 500 else None
        route = template or self._routed(scope)
        self._record(scope, caller, claims, route, status, arrived, started_at, error)

    def _routed(self, scope: Scope) -> str:
        """The template of the route the wrapped app's router chose for this call."""
        route = scope.get("route")
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return str(scope.get("root_path", "")) + path
        return self._template(scope)

    def _record(
        self,
        scope: Scope,
        caller: Caller,
        claims: PassToken,
        template: str,
        status: int,
        arrived: float,
        started_at: Any,
        error: str | None,
    ) -> None:
        agent = caller.user_agent[:MAX_USER_AGENT_CHARS] if caller.user_agent else None
        # The event in its wire form (UsageEvent's fields), built without a model: a model
        # here and its dump in the sender cost a call tens of microseconds. The worker
        # validates it as it validates any producer's events.
        wire = {
            "event_id": self._event_ids.next(),
            "project_id": claims.project_id,
            "pass_id": claims.pass_id,
            "client_id": claims.client_id,
            "activity_type": "api_request",
            "started_at": started_at.replace(microsecond=started_at.microsecond // 1000 * 1000),
            "endpoint": template,
            "http_method": scope["method"],
            "status_code": status,
            "success": status < 400,
            "duration_ms": round((time.perf_counter() - arrived) * 1000, 3),
            "client_ip": self._client_ip(scope, caller.forwarded_for),
            "user_agent": agent,
            "error_message": error[:MAX_ERROR_MESSAGE_CHARS] if error else None,
            "metadata": {},
        }
        self._events.record_wire(claims.pass_id, wire)

    def _template(self, scope: Scope) -> str:
        """The route template the wrapped app's router matches (`/v1/items/{item_id}`),
        under its mount point; the normalised path when the app has no router."""
        prefix = str(scope.get("root_path", ""))
        router = getattr(self.app, "router", None)
        routes = getattr(router, "routes", None)
        if routes is not None:
            found = _match(routes, scope)
            if found is not None:
                return prefix + found
        path = str(scope.get("path", "/"))
        return prefix + normalise_endpoint(path[len(prefix) :] or "/")

    def _client_ip(self, scope: Scope, forwarded: str | None) -> str | None:
        peer = (scope.get("client") or (None,))[0]
        if peer is not None and forwarded and self._trusted and self._is_trusted(peer):
            # Right to left: the first address not a trusted proxy is the client.
            for hop in reversed(forwarded.split(",")):
                hop = hop.strip()
                if _valid_ip(hop) and not self._is_trusted(hop):
                    return hop
        return peer if peer is not None and _valid_ip(peer) else None  # not "testclient"

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def _challenge(self, error: str, description: str, scope: str | None = None) -> str:
        text = description.replace('"', "'")
        challenge = f'Bearer realm="{self._realm}", error="{error}", error_description="{text}"'
        return challenge + (f', scope="{scope}"' if scope else "")

    async def _refuse(
        self, send: Send, status: int, challenge: str, error: str | None, body: bytes | None
    ) -> None:
        payload = body or orjson.dumps({"error": "invalid_request", "error_description":
                                        "a bearer access token is required"})  # fmt: skip
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"www-authenticate", challenge.encode("latin-1", "replace")),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _body(error: str, description: str) -> tuple[str, bytes]:
    return error, orjson.dumps({"error": error, "error_description": description})


class Caller(NamedTuple):
    """What the request's headers say of its caller, read in one pass over them."""

    token: str | None
    user_agent: str | None
    forwarded_for: str | None


def _caller(scope: Scope) -> Caller:
    token = agent = forwarded = None
    for name, value in scope.get("headers") or ():
        if name == b"authorization" and token is None:
            text = bytes(value).decode("latin-1")
            bearer = text[7:].strip()
            token = bearer if text[:7].lower() == "bearer " and bearer else ""
        elif name == b"user-agent":
            agent = bytes(value).decode("latin-1")
        elif name == b"x-forwarded-for":
            forwarded = bytes(value).decode("latin-1")
    return Caller(token or None, agent or None, forwarded)


def _match(routes: Sequence[Any], scope: Scope) -> str | None:
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, Mount):
            inner = _match(route.routes, {**scope, **child})
            return route.path + inner if inner is not None else None
        return str(route.path)
    return None


@functools.lru_cache(maxsize=65_536)
def _valid_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True
