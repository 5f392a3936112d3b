"""The whole loop on a running `up`: a pass is created, a standard OAuth client (Authlib)
exchanges its credentials, the demo API behind SentinelGateway is called N times (some
failing, some slow), and the pass's activity log and usage then hold exactly those calls."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import httpx
from authlib.integrations.httpx_client import OAuth2Client

from tests.e2e.stack import start_stack
from tests.workload import exact_p95

PROJECT = "demo"
CALLS = 120


def test_calls_through_the_gateway_are_the_pass_s_usage(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / "stack")
    try:
        created = stack.create_pass(PROJECT, "Loop Agent")
        pass_id = created["pass"]["pass_id"]
        with stack.client([PROJECT], ["usage:read"]) as admin:
            oauth = OAuth2Client(
                created["client_id"],
                created["client_secret"],
                token_endpoint_auth_method="client_secret_post",
            )
            token = oauth.fetch_token(
                f"{stack.base_url}/oauth/token", grant_type="client_credentials"
            )
            chance = random.Random(11)
            sent: Counter[tuple[str, int]] = Counter()
            with httpx.Client(
                base_url=stack.base_url,
                headers={"Authorization": f"Bearer {token['access_token']}"},
                timeout=10,
            ) as agent:
                for i in range(CALLS):
                    if i % 20 == 0:
                        response = agent.get("/demo/v1/slow")
                    elif i % 7 == 0:
                        response = agent.post("/demo/v1/items", json={"name": f"n{i}"})
                    else:  # ids above 10 do not exist: 404s, errors of the pass
                        response = agent.get(f"/demo/v1/items/{chance.randint(1, 14)}")
                    template = response.request.url.path
                    if template.startswith("/demo/v1/items/"):
                        template = "/demo/v1/items/{item_id}"
                    sent[(template, response.status_code)] += 1
            errors = sum(n for (_, status), n in sent.items() if status >= 400)
            assert 0 < errors < CALLS

            rows = _activity(admin, pass_id, CALLS)
            assert Counter((r["endpoint"], r["status_code"]) for r in rows) == sent
            assert all(r["client_ip"] == "127.0.0.1" for r in rows)
            slow = [r["duration_ms"] for r in rows if r["endpoint"] == "/demo/v1/slow"]
            assert min(slow) >= 200  # the gateway times the whole call

            metrics = _usage(admin, pass_id, CALLS)
            assert metrics["total_requests"] == CALLS
            assert metrics["error_count"] == errors
            assert metrics["error_rate"] == errors / CALLS
            exact = exact_p95([r["duration_ms"] for r in rows])
            assert exact is not None
            assert abs(metrics["p95_latency_ms"] - exact) <= 0.01 * exact
            assert metrics["token_generations"] == 1
    finally:
        stack.stop()


def _activity(admin: httpx.Client, pass_id: str, expected: int) -> list[dict]:  # type: ignore[type-arg]
    deadline = time.monotonic() + 60
    while True:
        rows: list[dict] = []  # type: ignore[type-arg]
        cursor = None
        while True:
            params = {"activity_type": "api_request", "per_page": 100}
            page = admin.get(
                f"/v1/projects/{PROJECT}/passes/{pass_id}/activity",
                params={**params, **({"cursor": cursor} if cursor else {})},
            ).json()
            rows += page.get("items", [])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        if len(rows) >= expected or time.monotonic() > deadline:
            assert len(rows) == expected
            return rows
        time.sleep(0.5)


def _usage(admin: httpx.Client, pass_id: str, expected: int) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 30
    while True:
        metrics = admin.get(
            f"/v1/projects/{PROJECT}/passes/{pass_id}/usage", params={"range": "24h"}
        ).json()["metrics"]
        if metrics["total_requests"] >= expected or time.monotonic() > deadline:
            return dict(metrics)
        time.sleep(0.5)


def test_after_a_restart_the_gateway_still_refuses_deleted_and_rotated_passes(
    tmp_path: Path,
) -> None:
    """The embedded broker keeps nothing across a restart, sentinel.passes included: the
    registry tells the new one every pass and every deletion before the gateway reads it,
    or a deleted pass's unexpired token would be admitted again (its signature still
    verifies: the keys persist)."""
    data_dir = tmp_path / "stack"
    # The default `iss` is the API's URL: a restart on another port would refuse the old
    # tokens for that reason alone, and the test would prove nothing.
    issuer = {"SENTINEL_OAUTH_ISSUER": "http://sentinel.test"}
    stack = start_stack(data_dir, **issuer)
    try:
        doomed = stack.create_pass(PROJECT, "Doomed Agent")
        rotated = stack.create_pass(PROJECT, "Rotated Agent")
        tokens = {
            name: _exchange(stack.base_url, created)
            for name, created in (("doomed", doomed), ("rotated", rotated))
        }
        with stack.client([PROJECT], ["passes:write"]) as admin:
            base = f"/v1/projects/{PROJECT}/passes"
            assert admin.delete(f"{base}/{doomed['pass']['pass_id']}").status_code == 204
            fresh = admin.post(f"{base}/{rotated['pass']['pass_id']}/regenerate").json()
    finally:
        stack.stop()
    again = start_stack(data_dir, **issuer)
    try:
        with httpx.Client(base_url=again.base_url, timeout=10) as http:

            def call(token: str) -> int:
                headers = {"Authorization": f"Bearer {token}"}
                return http.get("/demo/v1/items", headers=headers).status_code

            # For 3 s: at first introspection answers (the feed is not caught up yet),
            # then the feed alone, which must know of the deletion and the rotation.
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                assert call(tokens["doomed"]) == 401
                assert call(tokens["rotated"]) == 401
                time.sleep(0.1)
            assert call(_exchange(again.base_url, fresh)) == 200
    finally:
        again.stop()


def _exchange(base_url: str, created: dict) -> str:  # type: ignore[type-arg]
    response = httpx.post(
        f"{base_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(created["client_id"], created["client_secret"]),
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])
