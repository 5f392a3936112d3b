"""The pass registry as the API uses it: the store, the token issuer, the grant, and
introspection (RFC 7662), built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sentinel_usage.core.clock import SYSTEM_CLOCK, Clock
from sentinel_usage.core.settings import Settings
from sentinel_usage.passes.migrate import pending, upgrade
from sentinel_usage.passes.oauth import ClientCredentialsGrant, FailureLimiter, FailurePolicy
from sentinel_usage.passes.store import PassStore, create_engine
from sentinel_usage.passes.tokens import InvalidAccessTokenError, SigningKeys, TokenIssuer


@dataclass
class PassRegistry:
    store: PassStore
    issuer: TokenIssuer
    grant: ClientCredentialsGrant

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> PassRegistry:
        """Local mode creates the first signing key; production needs its own."""
        keys = SigningKeys.load(settings.signing_keys_dir, create=settings.mode == "local")
        store = PassStore(create_engine(settings.registry_url), clock)
        issuer = TokenIssuer(
            keys,
            settings.oauth_issuer or f"http://{settings.api_host}:{settings.api_port}",
            settings.oauth_audience,
            timedelta(seconds=settings.access_token_seconds),
            clock,
        )
        limiter = FailureLimiter(
            FailurePolicy(
                settings.oauth_max_failures,
                timedelta(seconds=settings.oauth_failure_window_seconds),
            )
        )
        return cls(store, issuer, ClientCredentialsGrant(store, issuer, limiter, clock))

    async def start(self) -> None:
        await upgrade(self.store.engine)

    async def stop(self) -> None:
        await self.store.close()

    async def pending_migrations(self) -> list[str]:
        return await pending(self.store.engine)

    async def introspect(self, token: str, projects: frozenset[str]) -> dict[str, Any]:
        """RFC 7662 for a caller that may see `projects`: `active` only while the token
        verifies, its pass exists, is not revoked and has not been regenerated since.
        A paused pass's tokens stay active until they expire (the seeds say so)."""
        try:
            claims = self.issuer.verify(token)
        except InvalidAccessTokenError:
            return {"active": False}
        if claims.get("project_id") not in projects:
            return {"active": False}
        sentinel_pass = await self.store.by_pass_id(str(claims["pass_id"]))
        if (
            sentinel_pass is None
            or sentinel_pass.project_id != claims["project_id"]
            or sentinel_pass.credential_version != claims["cv"]
            or sentinel_pass.revoked_at is not None
        ):
            return {"active": False}
        return {
            "active": True,
            "token_type": "Bearer",
            **{
                k: claims[k]
                for k in ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti")
                if k in claims
            },
            "project_id": claims["project_id"],
            "pass_id": claims["pass_id"],
            "status": sentinel_pass.status.value,
        }
