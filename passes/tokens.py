"""Access tokens of passes: RFC 9068 JWTs signed with ES256, and the JWKS that verifies
them. A key directory holds one PEM per key: the newest signs, all verify, so a rotation
adds a key, waits one token lifetime, then removes the old one."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from sentinel_usage.core.clock import SYSTEM_CLOCK, Clock
from sentinel_usage.core.errors import ConfigurationError
from sentinel_usage.passes.model import SentinelPass

ALGORITHM: Final = "ES256"
TOKEN_TYPE: Final = "at+jwt"  # noqa: S105 - RFC 9068 `typ`
LEEWAY_SECONDS: Final = 5


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: ec.EllipticCurvePrivateKey

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}


def _thumbprint(private: ec.EllipticCurvePrivateKey) -> str:
    """RFC 7638: SHA-256 of the public JWK's required members, in order, no spaces."""
    jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    return (
        base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).decode().rstrip("=")
    )


class SigningKeys:
    """The keys of a directory, newest (by file name) first."""

    def __init__(self, keys: list[SigningKey]) -> None:
        if not keys:
            raise ConfigurationError("no OAuth signing key")
        self.keys = keys
        self._by_kid = {k.kid: k for k in keys}

    @property
    def active(self) -> SigningKey:
        return self.keys[0]

    @classmethod
    def load(cls, directory: Path, create: bool = False) -> SigningKeys:
        """The PEM keys of `directory`; with `create`, a first key when there is none."""
        pems = sorted(directory.glob("*.pem"), reverse=True) if directory.is_dir() else []
        if not pems and create:
            directory.mkdir(parents=True, exist_ok=True)
            pems = [generate_key_file(directory)]
        keys = []
        for pem in pems:
            private = serialization.load_pem_private_key(pem.read_bytes(), password=None)
            if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != (
                "secp256r1"
            ):
                raise ConfigurationError(f"{pem} is not a P-256 (ES256) private key")
            keys.append(SigningKey(_thumbprint(private), private))
        if not keys:
            raise ConfigurationError(
                f"no OAuth signing key in {directory}: run `sentinel-usage oauth-key "
                f"--dir {directory}` (SENTINEL_OAUTH_KEYS_DIR)"
            )
        return cls(keys)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self.keys]}

    def key(self, kid: str) -> SigningKey | None:
        return self._by_kid.get(kid)


def generate_key_file(directory: Path, now: datetime | None = None) -> Path:
    """A new P-256 key, readable by its owner only, named so that newer sorts last."""
    private = ec.generate_private_key(ec.SECP256R1())
    stamp = (now or SYSTEM_CLOCK.now()).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{stamp}-{uuid.uuid4().hex[:8]}.pem"
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return path


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    jti: str


class InvalidAccessTokenError(Exception):
    """Not a token of ours, or no longer valid on its face (signature, expiry)."""


class TokenIssuer:
    def __init__(
        self,
        keys: SigningKeys,
        issuer: str,
        audience: str,
        lifetime: timedelta,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime
        self._clock = clock

    def issue(self, sentinel_pass: SentinelPass, scopes: list[str]) -> IssuedToken:
        """An RFC 9068 access token; it never outlives the pass's last valid day."""
        now = self._clock.now()
        expires = min(now + self.lifetime, sentinel_pass.valid_through())
        jti = uuid.uuid4().hex
        scope = " ".join(scopes)
        claims = {
            "iss": self.issuer,
            "sub": sentinel_pass.client_id,
            "aud": self.audience,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": jti,
            "client_id": sentinel_pass.client_id,
            "scope": scope,
            "project_id": sentinel_pass.project_id,
            "pass_id": sentinel_pass.pass_id,
            "cv": sentinel_pass.credential_version,
        }
        key = self.keys.active
        token = jwt.encode(
            claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": TOKEN_TYPE}
        )
        return IssuedToken(token, int(expires.timestamp()) - int(now.timestamp()), scope, jti)

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token this issuer signed, still within its lifetime."""
        try:
            header = jwt.get_unverified_header(token)
            key = self.keys.key(str(header.get("kid", "")))
            if key is None or header.get("typ") != TOKEN_TYPE:
                raise InvalidAccessTokenError("not a pass access token of this issuer")
            claims: dict[str, Any] = jwt.decode(
                token,
                key.private.public_key(),
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "sub", "jti", "pass_id", "cv"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidAccessTokenError(str(exc)) from None
        return claims
