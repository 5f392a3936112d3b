"""Token exchanges through HTTP against a running `sentinel-usage up`: 8 clients, each
exchanging client credentials in a loop (HTTP Basic, keep-alive), as agents would.
Prints `token_eps=` (exchanges per second) and `token_p99_ms=` (latency seen by a client)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.stack import start_stack


async def _client(base: str, auth: tuple[str, str], until: float, latencies: list[float]) -> None:
    # aiohttp, not httpx: httpx's client spent more CPU per request than the server did,
    # so the figure measured the client.
    headers = {"Authorization": aiohttp.encode_basic_auth(*auth)}
    async with aiohttp.ClientSession(base_url=base, headers=headers) as http:
        while time.perf_counter() < until:
            started = time.perf_counter()
            async with http.post("/oauth/token", data={"grant_type": "client_credentials"}) as r:
                body = await r.read()
            latencies.append(time.perf_counter() - started)
            if r.status != 200:
                raise SystemExit(f"exchange failed: {r.status} {body!r}")


async def _run(base: str, auth: tuple[str, str], clients: int, seconds: float) -> list[float]:
    latencies: list[float] = []
    until = time.perf_counter() + seconds
    await asyncio.gather(*(_client(base, auth, until, latencies) for _ in range(clients)))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    stack = start_stack(Path(tempfile.mkdtemp(prefix="sentinel-token-bench-")))
    try:
        with stack.client(["bench"], ["passes:write"]) as admin:
            created = admin.post(
                "/v1/projects/bench/passes",
                json={"agent_name": "Bench Agent", "agent_type": "bench"},
            ).json()
        auth = (created["client_id"], created["client_secret"])
        asyncio.run(_run(stack.base_url, auth, args.clients, 2))  # warm up
        started = time.perf_counter()
        latencies = asyncio.run(_run(stack.base_url, auth, args.clients, args.seconds))
        elapsed = time.perf_counter() - started
    finally:
        stack.stop()
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000
    print(
        f"token: {len(latencies)} exchanges, {args.clients} clients, {elapsed:.1f} s; "
        f"p50 {statistics.median(latencies) * 1000:.1f} ms"
    )
    print(f"token_eps={len(latencies) / elapsed:.0f} token_p99_ms={p99:.1f}")


if __name__ == "__main__":
    main()
