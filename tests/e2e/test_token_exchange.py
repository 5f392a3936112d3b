"""Every exchange is a usage event: N exchanges against a running `up`, some failing, are
exactly N `token_generation` rows in the pass's activity log and in its usage."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.e2e.stack import start_stack

PROJECT = "demo"
GOOD, BAD = 25, 7  # fewer failures than the limiter allows (10 a minute)


def test_exchanges_are_counted_exactly_in_activity_and_usage(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / "stack")
    try:
        created = stack.create_pass(PROJECT, "Exchange Bot")
        pass_id = created["pass"]["pass_id"]
        with stack.client([PROJECT], ["usage:read"]) as admin:
            with httpx.Client(base_url=stack.base_url, timeout=10) as agent:
                outcomes = [
                    agent.post(
                        "/oauth/token",
                        data={"grant_type": "client_credentials"},
                        auth=(created["client_id"], created["client_secret"] if i < GOOD else "x"),
                        headers={"User-Agent": "exchange-test/1.0"},
                    ).status_code
                    for i in range(GOOD + BAD)
                ]
            assert outcomes == [200] * GOOD + [401] * BAD
            path = f"/v1/projects/{PROJECT}/passes/{pass_id}"
            deadline = time.monotonic() + 60
            while True:
                page = admin.get(
                    f"{path}/activity",
                    params={"activity_type": "token_generation", "per_page": 100},
                ).json()
                if page.get("total") == GOOD + BAD or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert page["total"] == GOOD + BAD
            rows = page["items"]
            assert sum(r["success"] for r in rows) == GOOD
            assert {r["status_code"] for r in rows} == {200, 401}
            assert {r["endpoint"] for r in rows} == {"/oauth/token"}
            assert {r["user_agent"] for r in rows} == {"exchange-test/1.0"}
            assert all(r["client_ip"] == "127.0.0.1" for r in rows)
            failed = [r for r in rows if not r["success"]]
            assert all(r["error_message"].startswith("invalid_client") for r in failed)
            deadline = time.monotonic() + 30
            while True:
                metrics = admin.get(f"{path}/usage", params={"range": "24h"}).json()["metrics"]
                if metrics["token_generations"] == GOOD + BAD or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert metrics["token_generations"] == GOOD + BAD
            assert metrics["token_failures"] == BAD
            assert metrics["total_requests"] == 0  # exchanges are not API requests
    finally:
        stack.stop()
