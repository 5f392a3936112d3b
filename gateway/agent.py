"""The demo agent: exchanges a pass's credentials at /oauth/token (client credentials,
HTTP Basic) and calls the demo API at a steady rate until stopped, fetching a new token
before the old one expires."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import httpx
import structlog

log = structlog.get_logger(__name__)

CALLS = (
    ("GET", "/demo/v1/items", 0.45),
    ("GET", "/demo/v1/items/{n}", 0.3),
    ("POST", "/demo/v1/items", 0.1),
    ("GET", "/demo/v1/flaky", 0.1),
    ("GET", "/demo/v1/slow", 0.05),
)


@dataclass
class DemoAgent:
    base_url: str
    client_id: str
    client_secret: str
    rate: float = 5.0  # calls per second

    async def token(self, http: httpx.AsyncClient) -> tuple[str, float]:
        response = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(self.client_id, self.client_secret),
        )
        response.raise_for_status()
        body = response.json()
        return body["access_token"], time.monotonic() + float(body["expires_in"]) - 30

    async def run(self, calls: int | None = None) -> dict[int, int]:
        """Until cancelled (or `calls` made): the count of each status seen."""
        statuses: dict[int, int] = {}
        chance = random.Random()
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            token, renew_at = await self.token(http)
            made = 0
            while calls is None or made < calls:
                if time.monotonic() >= renew_at:
                    token, renew_at = await self.token(http)
                method, path, _ = chance.choices(CALLS, weights=[c[2] for c in CALLS])[0]
                path = path.format(n=chance.randint(1, 12))
                response = await http.request(
                    method,
                    path,
                    headers={"Authorization": f"Bearer {token}"},
                    json={"name": "made by the demo agent"} if method == "POST" else None,
                )
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                made += 1
                if made % 50 == 0:
                    log.info("demo_agent", calls=made, statuses=statuses)
                await asyncio.sleep(1 / self.rate)
        return statuses
