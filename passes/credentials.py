"""Client credentials: generated from `secrets`, kept only as a hash, compared in
constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import date
from typing import Final

SECRET_BYTES: Final = 32  # 256 bits
CLIENT_ID_PREFIX: Final = "sp_"
_PASS_ID_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"  # noqa: S105


@dataclass(frozen=True)
class IssuedSecret:
    """A secret as shown once to its owner, and the hash the store keeps."""

    secret: str
    digest: bytes

    def __repr__(self) -> str:  # never in a log or a traceback
        return "IssuedSecret(secret=<hidden>)"


def new_client_id() -> str:
    return CLIENT_ID_PREFIX + secrets.token_hex(12)


def new_secret() -> IssuedSecret:
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return IssuedSecret(secret, secret_digest(secret))


def secret_digest(secret: str) -> bytes:
    """SHA-256 of the secret. A slow password hash (bcrypt, argon2) protects guessable
    passwords; a 256-bit random secret cannot be guessed, and the token endpoint must
    verify a thousand of them a second."""
    return hashlib.sha256(secret.encode()).digest()


def secret_matches(secret: str, digest: bytes) -> bool:
    return hmac.compare_digest(secret_digest(secret), digest)


def new_pass_id(today: date) -> str:
    suffix = "".join(secrets.choice(_PASS_ID_ALPHABET) for _ in range(6))
    return f"SP-{today.year:04d}-{suffix}"
