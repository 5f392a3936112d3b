"""Verifying pass access tokens where the gateway runs: RFC 9068 JWTs checked against the
token service's JWKS (fetched, cached, refetched on an unknown `kid`), the verified claims
kept until the token expires so that a call pays for a signature check once per token."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import jwt
import structlog

log = structlog.get_logger(__name__)

ALGORITHMS: Final = ["ES256", "EdDSA"]
TOKEN_TYPE: Final = "at+jwt"  # noqa: S105 - RFC 9068 `typ`

JwksSource = Callable[[], Awaitable[dict[str, Any]]]


class InvalidTokenError(Exception):
    """RFC 6750 `invalid_token`: the description is safe to return to the caller."""


@dataclass(frozen=True)
class PassToken:
    pass_id: str
    project_id: str
    client_id: str
    scopes: frozenset[str]
    credential_version: int
    expires_at: float


class JwksKeys:
    """Public keys by `kid`. An unknown `kid` refetches the JWKS (a rotation added a key),
    at most once every `min_refresh` seconds so that forged kids cannot flood the source."""

    def __init__(self, source: JwksSource, min_refresh: float = 10.0) -> None:
        self._source = source
        self._min_refresh = min_refresh
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")

    async def key(self, kid: str) -> Any | None:
        if kid not in self._keys and time.monotonic() - self._fetched_at >= self._min_refresh:
            await self.refresh()
        return self._keys.get(kid)

    async def refresh(self) -> None:
        self._fetched_at = time.monotonic()
        document = await self._source()
        keys = {}
        for jwk in document.get("keys", []):
            try:
                keys[jwk["kid"]] = jwt.PyJWK(jwk).key
            except (KeyError, jwt.PyJWTError) as exc:
                log.warning("jwks_key_skipped", kid=jwk.get("kid"), error=str(exc))
        self._keys = keys


class AccessTokenVerifier:
    def __init__(
        self,
        keys: JwksKeys,
        audience: str,
        issuer: str | None = None,
        leeway: float = 5.0,
        cache_size: int = 50_000,
    ) -> None:
        self._keys = keys
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway
        self._cache_size = cache_size
        self._verified: dict[str | bytes, PassToken] = {}

    def cached(self, credentials: str | bytes) -> PassToken | None:
        """The claims of a token verified before under `credentials` (the token, or what
        `verify` was told to cache it as) that has not expired; None when `verify` must
        be awaited."""
        known = self._verified.get(credentials)
        if known is not None and known.expires_at + self._leeway > time.time():
            return known
        return None

    async def verify(self, token: str, *, cache_as: str | bytes | None = None) -> PassToken:
        """The token's claims, checked once and cached until it expires, under `cache_as`
        (the gateway gives the Authorization header as it came, so that the next call
        with it is one dict lookup: no parse, no decode) or the token itself."""
        key = token if cache_as is None else cache_as
        known = self.cached(key)
        if known is not None:
            return known
        verified = await self._verify(token)
        if len(self._verified) >= self._cache_size:
            self._verified.clear()  # bounded; the next calls verify again
        self._verified[key] = verified
        return verified

    async def _verify(self, token: str) -> PassToken:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidTokenError("the token is not a JWT") from None
        if header.get("typ") != TOKEN_TYPE:
            raise InvalidTokenError("not an access token (typ at+jwt)")
        key = await self._keys.key(str(header.get("kid", "")))
        if key is None:
            raise InvalidTokenError("signed by an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={
                    "require": ["exp", "iat", "pass_id", "project_id", "client_id", "cv"],
                    "verify_iss": self._issuer is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError("the token expired") from None
        except jwt.PyJWTError as exc:
            raise InvalidTokenError(f"the token does not verify: {exc}") from None
        return PassToken(
            pass_id=str(claims["pass_id"]),
            project_id=str(claims["project_id"]),
            client_id=str(claims["client_id"]),
            scopes=frozenset(str(claims.get("scope", "")).split()),
            credential_version=int(claims["cv"]),
            expires_at=float(claims["exp"]),
        )
