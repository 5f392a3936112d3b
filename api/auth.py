"""Bearer JWT verification (PyJWT) and token issuing for local use.

Claims: `projects` (list of project ids the bearer may read or write) and
`scope` (space-separated, or a list: `usage:read`, `usage:export`,
`events:write`). HS256 with a shared secret, or RS256/ES256 with public keys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt

SCOPES: Final = ("usage:read", "usage:export", "events:write", "passes:read", "passes:write")
ASYMMETRIC_ALGORITHMS: Final = ["RS256", "ES256"]


class AuthenticationError(Exception):
    """No token, or a token that does not verify."""


@dataclass(frozen=True)
class Principal:
    subject: str
    projects: frozenset[str]
    scopes: frozenset[str]

    def can_access(self, project_id: str) -> bool:
        return project_id in self.projects


class TokenVerifier:
    def __init__(self, key: str, algorithms: list[str], audience: str | None = None) -> None:
        self._key = key
        self._algorithms = algorithms
        self._audience = audience

    @classmethod
    def from_secret(cls, secret: str, audience: str | None = None) -> TokenVerifier:
        return cls(secret, ["HS256"], audience)

    @classmethod
    def from_public_key_file(cls, path: Path, audience: str | None = None) -> TokenVerifier:
        return cls(path.read_text(), ASYMMETRIC_ALGORITHMS, audience)

    def verify(self, token: str) -> Principal:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                options={"require": ["exp"], "verify_aud": self._audience is not None},
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"invalid token: {exc}") from None
        projects = claims.get("projects")
        if not isinstance(projects, list) or not all(isinstance(p, str) for p in projects):
            raise AuthenticationError("invalid token: 'projects' must be a list of project ids")
        raw_scope = claims.get("scope", "")
        scopes = raw_scope.split() if isinstance(raw_scope, str) else raw_scope
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise AuthenticationError("invalid token: 'scope' must be a string or a list")
        return Principal(str(claims.get("sub", "")), frozenset(projects), frozenset(scopes))


def issue_token(
    secret: str,
    projects: list[str],
    scopes: list[str],
    ttl_seconds: int = 12 * 3600,
    subject: str = "local-user",
    audience: str | None = None,
) -> str:
    """An HS256 token for `projects` with `scopes` (the CLI's `token` command, tests)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "projects": projects,
        "scope": " ".join(scopes),
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")
