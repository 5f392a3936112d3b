"""SentinelGateway: a pure ASGI middleware that any Starlette or FastAPI service mounts in
one line. It admits a request only with a valid pass access token, enforces the route's
scope (RFC 6750 answers), and records every call it admits as an `api_request` event:
the route template the router matched, the status, the time from the request's arrival
to the response's last byte, the client. The request path never waits on Kafka."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any, Final, NamedTuple, Protocol

import orjson
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    """What the gateway hands its calls to: GatewayProducer (bounded, never blocks), which
    builds each call's event (`AdmittedCall.to_wire`) when it sends the batch."""

    def record(self, item: AdmittedCall) -> bool: ...


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
    ) -> None:
        self.app = app
        self._verifier = verifier
        self._feed = feed
        self._events = events
        self._route_scopes = route_scopes
        self._realm = realm
        self._calls = CallEvents([ip_network(p) for p in trusted_proxies])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # What a call costs here is what it costs the wrapped API: the request path reads
        # the headers once, looks the token up, and leaves its record as a tuple; the
        # event is built when the producer sends the batch (AdmittedCall.to_wire).
        arrived = time.perf_counter()
        authorization, agent, forwarded = _headers(scope)
        # The common case, a token seen before of a pass the feed knows, costs no await
        # and no parse: the claims are cached under the header as it came.
        claims = self._verifier.cached(authorization) if authorization is not None else None
        if claims is None:
            token = _bearer(authorization)
            if token is None:
                await self._refuse(send, 401, f'Bearer realm="{self._realm}"', None, None)
                return
            try:
                claims = await self._verifier.verify(token, cache_as=authorization)
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
            refusal = await self._feed.refusal(_bearer(authorization) or "", claims)
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
            description = f"this route needs the {needed} scope"
            challenge = self._challenge("insufficient_scope", description, needed)
            await self._refuse(send, 403, challenge, *_body("insufficient_scope", description))
            template = template or self._template(scope)
            self._record(scope, claims, template, 403, arrived, agent, forwarded, description)
            return
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except Exception as exc:
            # Recorded as the 500 the caller sees, then raised for the server to handle.
            template = template or self._routed(scope)
            self._record(scope, claims, template, 500, arrived, agent, forwarded, repr(exc))
            raise
        error = "server error" if status >= 500 else None
        template = template or self._routed(scope)
        self._record(scope, claims, template, status, arrived, agent, forwarded, error)

    def _record(
        self,
        scope: Scope,
        claims: PassToken,
        template: str,
        status: int,
        arrived: float,
        agent: bytes | None,
        forwarded: bytes | None,
        error: str | None,
    ) -> None:
        seconds = time.perf_counter() - arrived
        # tuple.__new__: a NamedTuple's own __new__ is a Python function, twice the cost.
        call = (
            self._calls, claims, scope["method"], template, int(status),
            time.time() - seconds, seconds, scope.get("client"), forwarded, agent, error,
        )  # fmt: skip
        self._events.record(tuple.__new__(AdmittedCall, call))

    def _routed(self, scope: Scope) -> str:
        """The template of the route the wrapped app's router chose for this call."""
        route = scope.get("route")
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return str(scope.get("root_path", "")) + path
        return self._template(scope)

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


def _headers(scope: Scope) -> tuple[bytes | None, bytes | None, bytes | None]:
    """The Authorization, User-Agent and X-Forwarded-For of a request as they came, in one
    pass over its headers (the first Authorization counts)."""
    authorization = agent = forwarded = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            if authorization is None:
                authorization = value
        elif name == b"user-agent":
            agent = value
        elif name == b"x-forwarded-for":
            forwarded = value
    return authorization, agent, forwarded


def _bearer(authorization: bytes | None) -> str | None:
    """The token of an `Authorization: Bearer …` header; None for any other."""
    if authorization is None or authorization[:7].lower() != b"bearer ":
        return None
    return bytes(authorization[7:]).decode("latin-1").strip() or None


class CallEvents:
    """Builds the `api_request` event of an admitted call, off the request path: its id,
    its start to the millisecond, and the client behind the trusted proxies."""

    def __init__(self, trusted: Sequence[IPv4Network | IPv6Network]) -> None:
        self._trusted = trusted
        self._event_ids = EventIds()

    def wire(self, call: AdmittedCall) -> dict[str, Any]:
        """The event in its wire form (UsageEvent's fields), built without a model: the
        worker validates it as it validates any producer's events."""
        # One unpacking: a NamedTuple's field, read by name, is a descriptor call each.
        _, claims, method, template, status, started, seconds, client, forwarded, agent, error = (
            call
        )
        return {
            "event_id": self._event_ids.next(),
            "project_id": claims.project_id,
            "pass_id": claims.pass_id,
            "client_id": claims.client_id,
            "activity_type": "api_request",
            "started_at": datetime.fromtimestamp(int(started * 1000) / 1000, UTC),
            "endpoint": template,
            "http_method": method,
            "status_code": status,
            "success": status < 400,
            "duration_ms": round(seconds * 1_000_000) / 1000,
            "client_ip": self._client_ip(client, forwarded),
            "user_agent": _user_agent(agent) if agent else None,
            "error_message": error[:MAX_ERROR_MESSAGE_CHARS] if error else None,
            "metadata": {},
        }

    def _client_ip(self, client: Any, forwarded: bytes | None) -> str | None:
        peer = client[0] if client else None
        if peer is not None and forwarded and self._trusted and self._is_trusted(peer):
            # Right to left: the first address not a trusted proxy is the client.
            for hop in reversed(bytes(forwarded).decode("latin-1").split(",")):
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


class AdmittedCall(NamedTuple):
    """A call the gateway admitted, as the request path leaves it: `to_wire` (called by
    the producer's sender) makes its event."""

    events: CallEvents
    claims: PassToken
    method: str
    template: str
    status: int
    started: float  # time.time() at the first byte in
    seconds: float  # from the first byte in to the last byte out (time.perf_counter())
    client: tuple[str, int] | None  # the ASGI scope's
    forwarded_for: bytes | None
    user_agent: bytes | None
    error: str | None

    def to_wire(self) -> dict[str, Any]:
        return self.events.wire(self)


@functools.lru_cache(maxsize=4_096)  # a gateway's callers send a few agents, again and again
def _user_agent(value: bytes) -> str:
    return bytes(value).decode("latin-1")[:MAX_USER_AGENT_CHARS]


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
