"""Passes through HTTP: creation with the secret shown once, the OAuth 2.0 exchange by a
standard client (Authlib), JWKS verification, introspection, and the lifecycle (pause,
regenerate, scope change, revoke, delete), each one audited."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from typing import Any

import httpx
import jwt
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from authlib.integrations.httpx_client import OAuth2Client
from fastapi.testclient import TestClient

from sentinel_usage.core import topics
from tests.integration.conftest import bearer

PROJECT = "proj-passes"
ADMIN = bearer([PROJECT], ["passes:read", "passes:write", "usage:read"], subject="admin-1")
GATEWAY = bearer([PROJECT], ["passes:read"], subject="gateway-1")
TOKEN_URL = "http://testserver/oauth/token"


def create(client: TestClient, **fields: Any) -> dict[str, Any]:
    body = {"agent_name": "Sourcing Bot", "agent_type": "Sourcing Agent", **fields}
    response = client.post(f"/v1/projects/{PROJECT}/passes", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    return dict(response.json())


@pytest.fixture
def oauth(api_client: TestClient) -> Any:
    """An Authlib OAuth2 client whose HTTP goes to the app in this process."""

    def client(created: dict[str, Any], method: str) -> OAuth2Client:
        return OAuth2Client(
            created["client_id"],
            created["client_secret"],
            token_endpoint_auth_method=method,
            # TestClient's transport: Authlib's requests go to the app in this process.
            transport=api_client._transport,
            base_url="http://testserver",
        )

    return client


def exchange(api_client: TestClient, created: dict[str, Any], **form: str) -> httpx.Response:
    return api_client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", **form},
        auth=(created["client_id"], created["client_secret"]),
    )


def introspect(api_client: TestClient, token: str) -> dict[str, Any]:
    response = api_client.post("/oauth/introspect", data={"token": token}, headers=GATEWAY)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_creation_shows_the_secret_once_in_two_formats(api_client: TestClient) -> None:
    created = create(api_client, scopes="read:data, write:data,admin:users")
    view = created["pass"]
    assert view["agent_type"] == "sourcing_agent"
    assert view["scopes"] == ["read:data", "write:data", "admin:users"]
    assert view["access_level"] == "standard"
    assert view["state"] == "active"
    secret = created["client_secret"]
    assert len(secret) >= 43
    assert secret in created["formats"]["json"]
    assert f"export SENTINEL_CLIENT_SECRET={secret}" in created["formats"]["bash"]
    assert created["token_url"].endswith("/oauth/token")
    detail = api_client.get(f"/v1/projects/{PROJECT}/passes/{view['pass_id']}", headers=ADMIN)
    assert detail.json()["client_id"] == created["client_id"]
    assert secret not in detail.text
    listed = api_client.get(f"/v1/projects/{PROJECT}/passes", headers=ADMIN)
    assert secret not in listed.text


@pytest.mark.parametrize(
    ("fields", "field", "needle"),
    [
        ({"agent_name": "Bad-Name!"}, "agent_name", "pattern"),
        ({"agent_type": "  "}, "agent_type", "at least 1"),
        ({"access_level": "god"}, "access_level", "basic"),
        ({"usage_type": "toy"}, "usage_type", "ai_assistant"),
        ({"scopes": "read, wr ite\\"}, "scopes", "scopes separated by commas"),
        ({"scopes": ["read", " write"]}, "scopes", "is not a scope"),
        ({"access_level": None}, "access_level", "Input should be"),
        ({"pass_id": "SP-24-X"}, "pass_id", "pattern"),
        ({"valid_from": "2027-01-01", "valid_until": "2026-12-31"}, "", "valid_until"),
        ({"valid_from": 0}, "valid_from", "ISO 8601 date"),
        ({"valid_until": "2026-11-27T00:00:00Z"}, "valid_until", "ISO 8601 date"),
        ({"secret": "x"}, "secret", "Extra inputs"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    api_client: TestClient, fields: dict[str, Any], field: str, needle: str
) -> None:
    body = {"agent_name": "Bot", "agent_type": "bot", **fields}
    response = api_client.post(f"/v1/projects/{PROJECT}/passes", json=body, headers=ADMIN)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert any((not field or e["loc"][-1] == field) and needle in e["msg"] for e in errors), errors


def test_a_taken_pass_id_is_409(api_client: TestClient) -> None:
    pass_id = f"SP-2026-{uuid.uuid4().hex[:6].upper()}"
    create(api_client, pass_id=pass_id)
    again = api_client.post(
        f"/v1/projects/{PROJECT}/passes",
        json={"agent_name": "Bot", "agent_type": "bot", "pass_id": pass_id},
        headers=ADMIN,
    )
    assert again.status_code == 409


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_a_standard_client_fetches_a_token_that_verifies_against_the_jwks(
    api_client: TestClient, oauth: Any, method: str
) -> None:
    created = create(api_client, scopes="read:data,write:data")
    client = oauth(created, method)
    token = client.fetch_token(TOKEN_URL, grant_type="client_credentials", scope="read:data")
    assert token["token_type"].lower() == "bearer"
    assert token["scope"] == "read:data"
    assert 0 < token["expires_in"] <= 3600
    jwks = api_client.get("/.well-known/jwks.json").json()
    header = jwt.get_unverified_header(token["access_token"])
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(
        token["access_token"],
        jwt.PyJWK(key).key,
        algorithms=["ES256"],
        audience="sentinel-gateway",
    )
    assert claims["client_id"] == claims["sub"] == created["client_id"]
    assert claims["pass_id"] == created["pass"]["pass_id"]
    assert claims["project_id"] == PROJECT
    assert {"iss", "exp", "iat", "jti"} <= set(claims)


def test_oauth_errors_are_rfc_6749_section_5_2(api_client: TestClient) -> None:
    created = create(api_client, scopes="read")
    wrong = api_client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(created["client_id"], "not-the-secret"),
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    assert wrong.headers["cache-control"] == "no-store"
    assert exchange(api_client, created, scope="admin:users").json()["error"] == "invalid_scope"
    grant = api_client.post(
        "/oauth/token",
        data={"grant_type": "password"},
        auth=(created["client_id"], created["client_secret"]),
    )
    assert grant.json()["error"] == "unsupported_grant_type"
    both = api_client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_secret": created["client_secret"]},
        auth=(created["client_id"], created["client_secret"]),
    )
    assert both.json()["error"] == "invalid_request"
    twice = api_client.post(
        "/oauth/token",
        content="grant_type=client_credentials&grant_type=client_credentials",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": "Basic "
            + base64.b64encode(
                f"{created['client_id']}:{created['client_secret']}".encode()
            ).decode(),
        },
    )
    assert twice.json()["error"] == "invalid_request"
    assert api_client.post("/oauth/token", json={}).json()["error"] == "invalid_request"


def test_failed_exchanges_are_limited_then_429(api_client: TestClient) -> None:
    created = create(api_client)
    statuses = [
        api_client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(created["client_id"], "wrong"),
        ).status_code
        for _ in range(11)
    ]
    assert statuses == [401] * 10 + [429]
    limited = exchange(api_client, created)  # even the right secret waits
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1


def test_pause_fails_exchanges_but_earlier_tokens_stay_active(api_client: TestClient) -> None:
    created = create(api_client)
    pass_id = created["pass"]["pass_id"]
    token = exchange(api_client, created).json()["access_token"]
    paused = api_client.post(f"/v1/projects/{PROJECT}/passes/{pass_id}/deactivate", headers=ADMIN)
    assert paused.json()["state"] == "inactive"
    refused = exchange(api_client, created)
    assert refused.status_code == 401
    assert refused.json() == {
        "error": "invalid_client",
        "error_description": "the pass is inactive",
    }
    assert introspect(api_client, token)["active"] is True
    api_client.post(f"/v1/projects/{PROJECT}/passes/{pass_id}/activate", headers=ADMIN)
    assert exchange(api_client, created).status_code == 200


def test_regenerate_stops_the_old_secret_and_its_tokens_at_once(api_client: TestClient) -> None:
    created = create(api_client)
    pass_id = created["pass"]["pass_id"]
    old_token = exchange(api_client, created).json()["access_token"]
    rotated = api_client.post(f"/v1/projects/{PROJECT}/passes/{pass_id}/regenerate", headers=ADMIN)
    assert rotated.status_code == 200
    fresh = rotated.json()
    assert fresh["client_id"] == created["client_id"]
    assert fresh["client_secret"] != created["client_secret"]
    assert exchange(api_client, created).status_code == 401
    assert introspect(api_client, old_token) == {"active": False}
    new_token = exchange(api_client, fresh).json()["access_token"]
    assert introspect(api_client, new_token)["active"] is True


def test_scope_changes_apply_at_the_next_exchange(api_client: TestClient) -> None:
    created = create(api_client, scopes="read:data")
    pass_id = created["pass"]["pass_id"]
    before = exchange(api_client, created).json()["access_token"]
    changed = api_client.patch(
        f"/v1/projects/{PROJECT}/passes/{pass_id}",
        json={"scopes": ["read:data", "write:data"]},
        headers=ADMIN,
    )
    assert changed.json()["scopes"] == ["read:data", "write:data"]
    after = exchange(api_client, created).json()
    assert after["scope"] == "read:data write:data"
    assert introspect(api_client, before)["scope"] == "read:data"
    assert introspect(api_client, after["access_token"])["scope"] == "read:data write:data"


def test_revoke_and_delete_invalidate_tokens_at_once(api_client: TestClient) -> None:
    created = create(api_client)
    pass_id = created["pass"]["pass_id"]
    token = exchange(api_client, created).json()["access_token"]
    revoked = api_client.post(f"/v1/projects/{PROJECT}/passes/{pass_id}/revoke", headers=ADMIN)
    assert revoked.json()["state"] == "revoked"
    assert revoked.json()["revoked_at"] is not None
    assert introspect(api_client, token) == {"active": False}
    assert exchange(api_client, created).json()["error_description"] == "the pass is revoked"
    api_client.post(f"/v1/projects/{PROJECT}/passes/{pass_id}/activate", headers=ADMIN)
    token = exchange(api_client, created).json()["access_token"]
    assert introspect(api_client, token)["active"] is True
    deleted = api_client.delete(f"/v1/projects/{PROJECT}/passes/{pass_id}", headers=ADMIN)
    assert deleted.status_code == 204
    assert introspect(api_client, token) == {"active": False}
    assert exchange(api_client, created).status_code == 401
    for route in ("", "/usage", "/activity", "/overview", "/alerts", "/audit"):
        gone = api_client.get(f"/v1/projects/{PROJECT}/passes/{pass_id}{route}", headers=ADMIN)
        assert gone.status_code == 404, route  # the seeds: deletion removes it all
    trail = api_client.get(
        f"/v1/projects/{PROJECT}/audit", params={"pass_id": pass_id}, headers=ADMIN
    )
    assert [e["action"] for e in reversed(trail.json()["items"])] == [
        "created",
        "revoked",
        "activated",
        "deleted",
    ]
    assert {e["subject"] for e in trail.json()["items"]} == {"admin-1"}


def test_an_expired_or_not_yet_valid_pass_cannot_exchange(api_client: TestClient) -> None:
    future = create(api_client, valid_from="2099-01-01", valid_until="2099-12-31")
    refused = exchange(api_client, future)
    assert refused.json()["error_description"] == "the pass is valid from 2099-01-01"
    expired = create(api_client, valid_from="2020-01-01", valid_until="2020-12-31")
    assert exchange(api_client, expired).json()["error_description"] == (
        "the pass expired on 2020-12-31"
    )


def test_another_project_cannot_see_or_touch_a_pass_nor_introspect_its_tokens(
    api_client: TestClient,
) -> None:
    created = create(api_client)
    pass_id = created["pass"]["pass_id"]
    token = exchange(api_client, created).json()["access_token"]
    stranger = bearer(["elsewhere"], ["passes:read", "passes:write"])
    base = f"/v1/projects/{PROJECT}/passes/{pass_id}"
    assert api_client.get(base, headers=stranger).status_code == 404
    assert api_client.post(f"{base}/revoke", headers=stranger).status_code == 404
    assert api_client.delete(base, headers=stranger).status_code == 404
    answer = api_client.post("/oauth/introspect", data={"token": token}, headers=stranger)
    assert answer.json() == {"active": False}
    assert api_client.post("/oauth/introspect", data={"token": token}).status_code == 401
    reader = bearer([PROJECT], ["usage:read"])
    assert api_client.post(f"{base}/revoke", headers=reader).status_code == 403


def test_a_new_pass_has_a_usage_tab_before_any_activity(api_client: TestClient) -> None:
    created = create(api_client)
    usage = api_client.get(
        f"/v1/projects/{PROJECT}/passes/{created['pass']['pass_id']}/usage", headers=ADMIN
    )
    assert usage.status_code == 200
    assert usage.json()["metrics"]["total_requests"] == 0


def test_dates_out_of_order_are_422_in_one_request_and_409_against_the_pass(
    api_client: TestClient,
) -> None:
    created = create(api_client, valid_from="2026-01-01", valid_until="2027-01-01")
    path = f"/v1/projects/{PROJECT}/passes/{created['pass']['pass_id']}"
    both = api_client.patch(
        path, json={"valid_from": "2026-06-01", "valid_until": "2026-05-01"}, headers=ADMIN
    )
    assert both.status_code == 422
    against = api_client.patch(path, json={"valid_until": "2025-12-01"}, headers=ADMIN)
    assert against.status_code == 409
    assert "change both together" in against.json()["detail"]
    assert api_client.get(path, headers=ADMIN).json()["valid_until"] == "2027-01-01"


async def _passes_topic(bootstrap: str, wanted: int, within: float) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topics.PASSES, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + within
        while len(records) < wanted and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100)
            records += [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    return records


def test_lifecycle_changes_reach_the_passes_topic_within_a_second(
    api_client: TestClient, kafka_bootstrap: str
) -> None:
    """What a gateway learns: each change of a pass as a record keyed by its id, the
    delete as a tombstone, in the order they were made."""
    created = create(api_client, scopes="read:data")
    pass_id = created["pass"]["pass_id"]
    base = f"/v1/projects/{PROJECT}/passes/{pass_id}"
    api_client.post(f"{base}/regenerate", headers=ADMIN)
    api_client.post(f"{base}/deactivate", headers=ADMIN)
    assert api_client.delete(base, headers=ADMIN).status_code == 204
    deleted_at = time.monotonic()
    records = asyncio.run(_passes_topic(kafka_bootstrap, 10_000, within=1.0))
    mine = [r for r in records if r.key == pass_id.encode()]
    seen_within = time.monotonic() - deleted_at
    states = [orjson.loads(r.value) if r.value is not None else None for r in mine]
    assert [(s["credential_version"], s["status"]) if s else None for s in states] == [
        (1, "active"),
        (2, "active"),
        (2, "inactive"),
        None,
    ], f"after {seen_within:.2f} s"
    assert states[0]["scopes"] == ["read:data"]
    assert states[0]["project_id"] == PROJECT


def test_what_schemathesis_found_is_a_422_that_says_where(api_client: TestClient) -> None:
    """A list of more scopes than the document allows is refused even when its repeats
    fold to one; an audit cursor past a 64-bit id is refused, not a 500."""
    body = {"agent_name": "Many Scopes", "agent_type": "bench", "scopes": ["read:data"] * 101}
    response = api_client.post(f"/v1/projects/{PROJECT}/passes", json=body, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", "scopes"]
    assert "at most 100 scopes" in response.text
    audit = api_client.get(
        f"/v1/projects/{PROJECT}/audit", params={"cursor": "9711120360710800921"}, headers=ADMIN
    )
    assert audit.status_code == 422
    assert audit.json()["detail"][0]["loc"] == ["query", "cursor"]
