from __future__ import annotations

import base64
import hashlib
import hmac
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sentinel_usage.api.auth import AuthenticationError, TokenVerifier, issue_token

SECRET = "s" * 48


def test_an_issued_token_verifies_with_its_projects_and_scopes() -> None:
    token = issue_token(SECRET, ["p1", "p2"], ["usage:read", "events:write"])
    principal = TokenVerifier.from_secret(SECRET).verify(token)
    assert principal.projects == {"p1", "p2"}
    assert principal.scopes == {"usage:read", "events:write"}
    assert principal.can_access("p1")
    assert not principal.can_access("p3")


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"projects": ["p"], "scope": "usage:read", "exp": int(time.time()) - 3600}, "expired"),
        ({"projects": ["p"], "scope": "usage:read"}, "exp"),
        ({"projects": "p", "scope": "usage:read", "exp": int(time.time()) + 864_000}, "projects"),
        ({"projects": ["p"], "scope": 5, "exp": int(time.time()) + 864_000}, "scope"),
    ],
)
def test_bad_claims_are_refused(claims: dict[str, object], reason: str) -> None:
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    with pytest.raises(AuthenticationError, match=reason):
        TokenVerifier.from_secret(SECRET).verify(token)


def test_a_token_signed_with_another_key_or_alg_none_is_refused() -> None:
    with pytest.raises(AuthenticationError, match="Signature"):
        TokenVerifier.from_secret(SECRET).verify(issue_token("t" * 48, ["p"], ["usage:read"]))
    unsigned = jwt.encode({"projects": ["p"], "exp": int(time.time()) + 60}, None, algorithm="none")
    with pytest.raises(AuthenticationError):
        TokenVerifier.from_secret(SECRET).verify(unsigned)


def test_es256_tokens_verify_with_the_public_key(tmp_path: pytest.TempPathFactory) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path / "public.pem"  # type: ignore[operator]
    path.write_bytes(public)
    token = jwt.encode(
        {"projects": ["p"], "scope": ["usage:read"], "exp": int(time.time()) + 60},
        key,
        algorithm="ES256",
    )
    assert TokenVerifier.from_public_key_file(path).verify(token).scopes == {"usage:read"}

    # An HS256 token "signed" with the public key must not pass (algorithm confusion);
    # PyJWT refuses to make one, so it is made by hand.
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    header = b64(b'{"alg":"HS256","typ":"JWT"}')
    body = b64(b'{"projects":["p"],"scope":"usage:read","exp":%d}' % (int(time.time()) + 60))
    signature = b64(hmac.new(public, header + b"." + body, hashlib.sha256).digest())
    forged = b".".join([header, body, signature]).decode()
    with pytest.raises(AuthenticationError):
        TokenVerifier.from_public_key_file(path).verify(forged)
