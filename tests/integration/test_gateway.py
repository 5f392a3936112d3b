"""SentinelGateway in front of the demo API, with tokens from the real token service and
the pass feed read from the real broker: admission, RFC 6750 answers, scopes, revocation
within a second, and what each admitted call records."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from sentinel_usage.core.events import EventValidator, UsageEvent
from sentinel_usage.gateway.demo import create_demo_app
from sentinel_usage.gateway.feed import PassFeed
from sentinel_usage.gateway.middleware import AdmittedCall, SentinelGateway
from sentinel_usage.gateway.tokens import AccessTokenVerifier, JwksKeys
from sentinel_usage.ingest.admin import ensure_topics
from tests.integration.conftest import bearer

PROJECT = "proj-gateway"
ADMIN = bearer([PROJECT], ["passes:read", "passes:write"], subject="admin-gw")


class Recorded:
    """The events the gateway hands over, in order (GatewayProducer's place), each
    validated as the worker validates what a producer sends."""

    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    def record(self, item: AdmittedCall) -> bool:
        event = EventValidator().validate(orjson.loads(orjson.dumps(item.to_wire())))
        assert event.pass_id == item.claims.pass_id
        self.events.append(event)
        return True


@pytest.fixture
async def gateway(
    api_client: TestClient, kafka_bootstrap: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Recorded]]:
    async def jwks() -> dict[str, Any]:
        return dict(api_client.get("/.well-known/jwks.json").json())

    await ensure_topics(kafka_bootstrap, 1)  # what `up` does at start
    feed = PassFeed(kafka_bootstrap)
    following = asyncio.create_task(feed.run())
    deadline = time.monotonic() + 20
    while not feed.healthy:
        assert time.monotonic() < deadline, "the feed did not catch up"
        await asyncio.sleep(0.05)
    recorded = Recorded()
    app = SentinelGateway(
        create_demo_app(seed=7),
        verifier=AccessTokenVerifier(JwksKeys(jwks), audience="sentinel-gateway"),
        feed=feed,
        events=recorded,
        trusted_proxies=["10.0.0.0/8"],
    )
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 4321))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        yield client, recorded
    following.cancel()


def new_pass(api_client: TestClient, scopes: str = "read:data,write:data") -> dict[str, Any]:
    body = {"agent_name": "Gateway Bot", "agent_type": "bot", "scopes": scopes}
    created = api_client.post(f"/v1/projects/{PROJECT}/passes", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    return dict(created.json())


def token_of(api_client: TestClient, created: dict[str, Any]) -> str:
    response = api_client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(created["client_id"], created["client_secret"]),
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def test_admitted_calls_are_recorded_with_their_route_template(
    api_client: TestClient, gateway: tuple[httpx.AsyncClient, Recorded]
) -> None:
    client, recorded = gateway
    created = new_pass(api_client)
    auth = {"Authorization": f"Bearer {token_of(api_client, created)}", "User-Agent": "gw/1"}
    before = datetime.now(UTC)
    assert (await client.get("/v1/items/3", headers=auth)).status_code == 200
    assert (await client.get("/v1/items/99", headers=auth)).status_code == 404
    forwarded = {**auth, "X-Forwarded-For": "203.0.113.9, 10.9.9.9"}
    assert (
        await client.post("/v1/items", json={"name": "x"}, headers=forwarded)
    ).status_code == 201
    first, missing, posted = recorded.events
    assert (first.endpoint, first.http_method, first.status_code, first.success) == (
        "/v1/items/{item_id}", "GET", 200, True,
    )  # fmt: skip
    assert (missing.status_code, missing.success) == (404, False)
    assert (posted.endpoint, posted.status_code) == ("/v1/items", 201)
    assert first.pass_id == created["pass"]["pass_id"]
    assert first.client_id == created["client_id"]
    assert first.project_id == PROJECT
    assert first.activity_type == "api_request"
    assert first.user_agent == "gw/1"
    assert first.client_ip == "10.1.2.3"  # no forwarded header: the peer
    assert posted.client_ip == "203.0.113.9"  # the peer is a trusted proxy
    assert all(e.duration_ms > 0 for e in recorded.events)
    # The event is built when its batch is sent; its start is still the call's arrival,
    # to the millisecond.
    assert before - timedelta(milliseconds=1) <= first.started_at <= datetime.now(UTC)
    assert all(e.started_at.microsecond % 1000 == 0 for e in recorded.events)
    assert len({e.event_id for e in recorded.events}) == 3


async def test_a_known_token_is_found_by_its_header_and_only_a_bearer_one_is(
    api_client: TestClient, gateway: tuple[httpx.AsyncClient, Recorded]
) -> None:
    """The claims are cached under the Authorization header as it came: the same token
    in another spelling of the scheme verifies once more, and another scheme carrying
    the very same token is refused."""
    client, _ = gateway
    token = token_of(api_client, new_pass(api_client))
    for header in (f"Bearer {token}", f"Bearer {token}", f"bearer  {token} ", f"BEARER {token}"):
        assert (await client.get("/v1/items", headers={"Authorization": header})).is_success
    for header in (f"Basic {token}", f"Token {token}", token, "Bearer ", "Bearer"):
        answer = await client.get("/v1/items", headers={"Authorization": header})
        assert answer.status_code == 401, header
        assert answer.headers["www-authenticate"] == 'Bearer realm="sentinel"'


async def test_rfc_6750_answers_and_scopes(
    api_client: TestClient, gateway: tuple[httpx.AsyncClient, Recorded]
) -> None:
    client, recorded = gateway
    none = await client.get("/v1/items")
    assert none.status_code == 401
    assert none.headers["www-authenticate"] == 'Bearer realm="sentinel"'
    forged = await client.get("/v1/items", headers={"Authorization": "Bearer abc.def.ghi"})
    assert forged.status_code == 401
    assert 'error="invalid_token"' in forged.headers["www-authenticate"]
    reader = new_pass(api_client, scopes="read:data")
    auth = {"Authorization": f"Bearer {token_of(api_client, reader)}"}
    assert (await client.get("/v1/items", headers=auth)).status_code == 200
    denied = await client.post("/v1/items", json={"name": "x"}, headers=auth)
    assert denied.status_code == 403
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
    assert 'scope="write:data"' in denied.headers["www-authenticate"]
    assert [e.status_code for e in recorded.events] == [200, 403]


async def test_an_exception_is_recorded_as_a_500_and_raised(
    api_client: TestClient, kafka_bootstrap: str
) -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("backend exploded")

    async def jwks() -> dict[str, Any]:
        return dict(api_client.get("/.well-known/jwks.json").json())

    recorded = Recorded()
    feed = PassFeed(kafka_bootstrap)
    app = SentinelGateway(
        broken,
        verifier=AccessTokenVerifier(JwksKeys(jwks), audience="sentinel-gateway"),
        feed=feed,
        events=recorded,
    )
    token = token_of(api_client, new_pass(api_client))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        with pytest.raises(RuntimeError, match="exploded"):
            await client.get("/v1/anything/42", headers={"Authorization": f"Bearer {token}"})
    (event,) = recorded.events
    assert (event.status_code, event.endpoint) == (500, "/v1/anything/{id}")
    assert "backend exploded" in (event.error_message or "")


async def test_delete_and_regenerate_refuse_tokens_within_a_second_pause_does_not(
    api_client: TestClient, gateway: tuple[httpx.AsyncClient, Recorded]
) -> None:
    client, _ = gateway

    async def refused_within(token: str, seconds: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            answer = await client.get("/v1/items", headers={"Authorization": f"Bearer {token}"})
            if answer.status_code == 401:
                return time.monotonic() - started
            await asyncio.sleep(0.02)
        raise AssertionError(f"still admitted after {seconds} s")

    paused = new_pass(api_client)
    paused_token = token_of(api_client, paused)
    base = f"/v1/projects/{PROJECT}/passes/{paused['pass']['pass_id']}"
    api_client.post(f"{base}/deactivate", headers=ADMIN)
    await asyncio.sleep(1.0)
    kept = await client.get("/v1/items", headers={"Authorization": f"Bearer {paused_token}"})
    assert kept.status_code == 200  # the seeds: a paused pass's tokens work until they expire

    rotated = new_pass(api_client)
    old = token_of(api_client, rotated)
    assert (await client.get("/v1/items", headers={"Authorization": f"Bearer {old}"})).is_success
    api_client.post(
        f"/v1/projects/{PROJECT}/passes/{rotated['pass']['pass_id']}/regenerate", headers=ADMIN
    )
    assert await refused_within(old, 1.0) < 1.0

    doomed = new_pass(api_client)
    token = token_of(api_client, doomed)
    assert (await client.get("/v1/items", headers={"Authorization": f"Bearer {token}"})).is_success
    api_client.delete(f"/v1/projects/{PROJECT}/passes/{doomed['pass']['pass_id']}", headers=ADMIN)
    assert await refused_within(token, 1.0) < 1.0


def test_a_broad_scope_grants_its_narrower_ones() -> None:
    from sentinel_usage.gateway.middleware import grants

    assert grants(frozenset({"read"}), "read:data")
    assert grants(frozenset({"read:data"}), "read:data")
    assert not grants(frozenset({"read:data"}), "write:data")
    assert not grants(frozenset({"read:other"}), "read:data")


async def test_with_kafka_away_calls_are_served_and_events_wait(api_client: TestClient) -> None:
    """The gateway's broker is down: calls are answered as usual, the events wait in the
    producer's buffer (sent once Kafka is back: tests/integration/test_producers.py)."""
    from sentinel_usage.cli.tansu import free_port
    from sentinel_usage.ingest.producer import GatewayProducer

    async def jwks() -> dict[str, Any]:
        return dict(api_client.get("/.well-known/jwks.json").json())

    producer = GatewayProducer(f"127.0.0.1:{free_port()}")  # nothing listens there
    await producer.start()
    app = SentinelGateway(
        create_demo_app(),
        verifier=AccessTokenVerifier(JwksKeys(jwks), audience="sentinel-gateway"),
        feed=PassFeed(f"127.0.0.1:{free_port()}"),
        events=producer,
    )
    auth = {"Authorization": f"Bearer {token_of(api_client, new_pass(api_client))}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        answers = [(await client.get("/v1/items", headers=auth)).status_code for _ in range(20)]
    assert answers == [200] * 20
    assert producer.dropped == 0
    await producer.close(flush_seconds=0.5)
