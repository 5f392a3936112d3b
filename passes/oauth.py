"""The OAuth 2.0 client-credentials grant (RFC 6749 §4.4), split as Authlib splits it:
client authentication (§2.3.1), the grant's rules, and the token generator
(passes/tokens.py). Errors are §5.2's, raised as OAuthError."""

from __future__ import annotations

import base64
import binascii
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal
from urllib.parse import unquote_plus

from sentinel_usage.core.clock import SYSTEM_CLOCK, Clock
from sentinel_usage.passes.credentials import secret_matches
from sentinel_usage.passes.model import SCOPE_PATTERN, SentinelPass
from sentinel_usage.passes.store import PassStore
from sentinel_usage.passes.tokens import IssuedToken, TokenIssuer

GRANT_TYPE: Final = "client_credentials"
AuthMethod = Literal["client_secret_basic", "client_secret_post"]


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: `error` code, description, HTTP status."""

    def __init__(
        self, error: str, description: str, status: int = 400, *, retry_after: int | None = None
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    secret: str
    method: AuthMethod

    def __repr__(self) -> str:
        return f"ClientCredentials(client_id={self.client_id!r}, method={self.method!r})"


def client_credentials(authorization: str | None, form: dict[str, str]) -> ClientCredentials:
    """§2.3.1: HTTP Basic (id and secret form-urlencoded, then base64) or the body's
    `client_id`/`client_secret`; never both."""
    in_body = "client_secret" in form
    if authorization and authorization[:6].lower() == "basic ":
        if in_body:
            raise OAuthError("invalid_request", "use one client authentication method, not two")
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            raw_id, raw_secret = decoded.split(":", 1)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise OAuthError("invalid_client", "malformed HTTP Basic credentials", 401) from None
        return ClientCredentials(
            unquote_plus(raw_id), unquote_plus(raw_secret), "client_secret_basic"
        )
    if in_body and form.get("client_id"):
        return ClientCredentials(form["client_id"], form["client_secret"], "client_secret_post")
    raise OAuthError("invalid_client", "client authentication is required", 401)


@dataclass(frozen=True)
class FailurePolicy:
    """At most `max_failures` failed exchanges per client within `window`; beyond, 429."""

    max_failures: int = 10
    window: timedelta = timedelta(minutes=1)


@dataclass
class FailureLimiter:
    """Failed exchanges per client id; time is a parameter (tests use a fixed clock)."""

    policy: FailurePolicy = field(default_factory=FailurePolicy)
    _failures: dict[str, deque[datetime]] = field(default_factory=dict)

    def retry_after(self, client_id: str, now: datetime) -> int | None:
        """Seconds until `client_id` may try again; None when it may now."""
        recent = self._recent(client_id, now)
        if recent is None or len(recent) < self.policy.max_failures:
            return None
        return max(1, int((recent[0] + self.policy.window - now).total_seconds()) + 1)

    def failed(self, client_id: str, now: datetime) -> None:
        recent = self._recent(client_id, now)
        if recent is None:
            if len(self._failures) >= 100_000:  # bound the memory an attacker can take
                self._failures.pop(next(iter(self._failures)))
            recent = self._failures[client_id] = deque()
        recent.append(now)

    def _recent(self, client_id: str, now: datetime) -> deque[datetime] | None:
        recent = self._failures.get(client_id)
        if recent is None:
            return None
        while recent and recent[0] <= now - self.policy.window:
            recent.popleft()
        if not recent:
            del self._failures[client_id]
            return None
        return recent


class CredentialsCache:
    """The token endpoint's lookups of a client's pass and secret hash, kept for `ttl`
    seconds: agents exchange again and again, and the store's round trip was most of an
    exchange's cost. A change committed in this process empties it at once (the store's
    generation); one committed by another process is seen within `ttl` (DESIGN: refused
    everywhere within a second). Unknown clients are not cached, so a new pass works at
    once everywhere."""

    def __init__(self, store: PassStore, ttl: float = 1.0, size: int = 100_000) -> None:
        self._store = store
        self._ttl = ttl
        self._size = size
        self._entries: dict[str, tuple[float, tuple[SentinelPass, bytes]]] = {}
        self._generation = store.generation

    async def get(self, client_id: str) -> tuple[SentinelPass, bytes] | None:
        now = time.monotonic()
        if self._generation != self._store.generation:
            self._entries.clear()
            self._generation = self._store.generation
        cached = self._entries.get(client_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await self._store.credentials(client_id)
        if found is not None:
            if len(self._entries) >= self._size:
                self._entries.clear()
            self._entries[client_id] = (now + self._ttl, found)
        return found


@dataclass(frozen=True)
class Exchange:
    """The outcome of one exchange: the pass (when the client is known) and the token
    (when it succeeded), or the error."""

    sentinel_pass: SentinelPass | None
    token: IssuedToken | None = None
    error: OAuthError | None = None


class ClientCredentialsGrant:
    def __init__(
        self,
        store: PassStore,
        issuer: TokenIssuer,
        limiter: FailureLimiter | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._credentials = CredentialsCache(store)
        self._issuer = issuer
        self._limiter = limiter or FailureLimiter()
        self._clock = clock

    async def exchange(self, authorization: str | None, form: dict[str, str]) -> Exchange:
        """Never raises OAuthError: it is returned, with the pass when one was named,
        so that the caller records the failed exchange against that pass."""
        now = self._clock.now()
        try:
            credentials = client_credentials(authorization, form)
        except OAuthError as refused:
            return Exchange(None, error=refused)
        retry = self._limiter.retry_after(credentials.client_id, now)
        found = await self._credentials.get(credentials.client_id)
        sentinel_pass = found[0] if found else None
        if retry is not None:
            limited = OAuthError(
                "too_many_requests",
                f"too many failed exchanges; retry in {retry} s",
                429,
                retry_after=retry,
            )
            return Exchange(sentinel_pass, error=limited)
        try:
            if found is None or not secret_matches(credentials.secret, found[1]):
                raise OAuthError("invalid_client", "unknown client or wrong secret", 401)
            assert sentinel_pass is not None
            token = self._grant(sentinel_pass, form, now)
        except OAuthError as error:
            self._limiter.failed(credentials.client_id, now)
            return Exchange(sentinel_pass, error=error)
        return Exchange(sentinel_pass, token=token)

    def _grant(
        self, sentinel_pass: SentinelPass, form: dict[str, str], now: datetime
    ) -> IssuedToken:
        grant_type = form.get("grant_type")
        if grant_type is None:
            raise OAuthError("invalid_request", "grant_type is required")
        if grant_type != GRANT_TYPE:
            raise OAuthError("unsupported_grant_type", f"only {GRANT_TYPE} is supported here")
        refusal = sentinel_pass.exchange_refusal(now)
        if refusal is not None:
            # The seeds: a deactivated pass "rejects all authentication attempts". The
            # caller proved the secret, so the description may say why.
            raise OAuthError("invalid_client", refusal, 401)
        return self._issuer.issue(sentinel_pass, requested_scopes(form.get("scope"), sentinel_pass))


def requested_scopes(scope: str | None, sentinel_pass: SentinelPass) -> list[str]:
    """§3.3: absent means every scope of the pass; otherwise a subset of them."""
    if scope is None or not scope.strip():
        return list(sentinel_pass.scopes)
    asked = list(dict.fromkeys(scope.split()))
    malformed = [s for s in asked if not SCOPE_PATTERN.fullmatch(s)]
    if malformed:
        raise OAuthError("invalid_scope", f"malformed scope {malformed[0]!r}")
    beyond = [s for s in asked if s not in sentinel_pass.scopes]
    if beyond:
        raise OAuthError("invalid_scope", f"not granted to this pass: {' '.join(beyond)}")
    return asked
