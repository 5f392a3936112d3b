"""The gateway's cost, on the same ASGI app (the demo API) with and without
SentinelGateway, in one run:
- `gateway_overhead_us=`: the median added time per call, called through the ASGI
  interface (no network, so the figure is the middleware's own);
- `gateway_rps_ratio=`: calls per second with the middleware over without, each app
  served by uvicorn in a process of its own and called by 8 keep-alive clients, as a
  service behind the gateway is called."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sentinel_usage.cli.tansu import TansuBroker
from sentinel_usage.gateway.demo import create_demo_app
from sentinel_usage.gateway.feed import PassFeed
from sentinel_usage.gateway.middleware import SentinelGateway
from sentinel_usage.gateway.tokens import AccessTokenVerifier, JwksKeys
from sentinel_usage.ingest.producer import GatewayProducer
from sentinel_usage.passes.model import AccessLevel, PassStatus, SentinelPass, UsageType
from sentinel_usage.passes.tokens import SigningKeys, TokenIssuer

CALLS = 20_000


def _token(keys: SigningKeys) -> str:
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "pass_id": "SP-2026-BENCH1", "project_id": "bench", "client_id": "sp_bench",
        "agent_name": "Bench", "agent_type": "bench", "description": None,
        "access_level": AccessLevel.STANDARD, "organization": None,
        "usage_type": UsageType.OTHER, "valid_from": date(2026, 1, 1),
        "valid_until": date(2099, 1, 1), "scopes": ("read:data",), "integration_notes": None,
        "credential_type": "api_key", "status": PassStatus.ACTIVE, "revoked_at": None,
        "created_at": now, "updated_at": now, "credential_version": 1,
    }  # fmt: skip
    sentinel_pass = SentinelPass(**fields)
    issuer = TokenIssuer(keys, "http://bench", "sentinel-gateway", timedelta(hours=1))
    return issuer.issue(sentinel_pass, ["read:data"]).access_token


async def _call(app: Any, scope: dict[str, Any]) -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(scope), receive, send)
    return status


async def _time(app: Any, scope: dict[str, Any]) -> tuple[list[float], float]:
    for _ in range(500):  # warm up (and verify the token once)
        assert await _call(app, scope) == 200
    per_call = []
    started = time.perf_counter()
    for _ in range(CALLS):
        before = time.perf_counter()
        await _call(app, scope)
        per_call.append(time.perf_counter() - before)
    return per_call, CALLS / (time.perf_counter() - started)


def _guarded(keys: SigningKeys, producer: GatewayProducer) -> SentinelGateway:
    async def jwks() -> dict[str, Any]:
        return keys.jwks()

    return SentinelGateway(
        create_demo_app(),
        verifier=AccessTokenVerifier(JwksKeys(jwks), audience="sentinel-gateway"),
        feed=PassFeed("127.0.0.1:1"),
        events=producer,
    )


def _serve(keys_dir: str, port: int, with_gateway: bool, bootstrap: str) -> None:
    """One app served by uvicorn; with the gateway, its producer sends every event to a
    real broker, as a deployed gateway does (what it costs is part of the gateway's)."""
    import uvicorn

    async def serve() -> None:
        producer = GatewayProducer(bootstrap)
        app: Any = create_demo_app()
        if with_gateway:
            await producer.start()
            app = _guarded(SigningKeys.load(Path(keys_dir)), producer)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
        await uvicorn.Server(config).serve()

    asyncio.run(serve())


async def _http_rps(port: int, token: str, seconds: float = 8.0) -> float:
    import aiohttp

    done = 0
    until = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers=headers) as http:
            while time.perf_counter() < until:
                async with http.get("/v1/items/3") as response:
                    await response.read()
                    assert response.status == 200, response.status
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(8)))
    return done / (time.perf_counter() - started)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _served_rps(
    keys_dir: str, token: str, with_gateway: bool, bootstrap: str
) -> tuple[float, float]:
    """(calls per second the clients saw, server CPU seconds per call)."""
    from sentinel_usage.cli.tansu import free_port

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            keys_dir,
            str(port),
            str(int(with_gateway)),
            bootstrap,
        ],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                asyncio.run(_http_rps(port, token, seconds=1))  # also the warm-up
                break
            except OSError:  # aiohttp's connection errors: not listening yet
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        cpu_before = _cpu_seconds(server.pid)
        started = time.perf_counter()
        rps = asyncio.run(_http_rps(port, token))
        calls = rps * (time.perf_counter() - started)
        return rps, (_cpu_seconds(server.pid) - cpu_before) / calls
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    keys_dir = tempfile.mkdtemp()
    keys = SigningKeys.load(Path(keys_dir), create=True)
    bare = create_demo_app()
    guarded = _guarded(keys, GatewayProducer("127.0.0.1:1", buffer_size=10_000_000))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/v1/items/3", "raw_path": b"/v1/items/3",
        "query_string": b"", "root_path": "", "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "headers": [(b"authorization", f"Bearer {_token(keys)}".encode()),
                    (b"user-agent", b"bench/1")],
    }  # fmt: skip
    without, rps_without = asyncio.run(_time(bare, scope))
    with_gateway, rps_with = asyncio.run(_time(guarded, scope))
    overhead_us = (statistics.median(with_gateway) - statistics.median(without)) * 1e6
    print(
        f"gateway: {CALLS} calls each; median {statistics.median(without) * 1e6:.0f} us "
        f"without, {statistics.median(with_gateway) * 1e6:.0f} us with; "
        f"{rps_without:.0f} vs {rps_with:.0f} calls/s"
    )
    token = _token(keys)
    # Alternated, twice each, so that a drift of the machine falls on both sides. On a
    # 2-core machine the clients compete with the server for the CPU, so the calls/s they
    # see understate what the server can do; the ratio is the server's own capacity:
    # its CPU time per call without the middleware over with it.
    with TansuBroker() as broker:
        runs = [
            _served_rps(keys_dir, token, bool(i % 2), broker.bootstrap_servers) for i in range(4)
        ]
    seen_without = statistics.mean(r[0] for r in runs[0::2])
    seen_with = statistics.mean(r[0] for r in runs[1::2])
    cpu_without = statistics.mean(r[1] for r in runs[0::2])
    cpu_with = statistics.mean(r[1] for r in runs[1::2])
    print(
        f"gateway: in-process ratio {rps_with / rps_without:.2f}; served by uvicorn, 8 "
        f"clients: {seen_without:.0f} calls/s seen without, {seen_with:.0f} with; server CPU "
        f"per call {cpu_without * 1e6:.0f} us without, {cpu_with * 1e6:.0f} us with"
    )
    ratio = cpu_without / cpu_with
    print(f"gateway_overhead_us={overhead_us:.0f} gateway_rps_ratio={ratio:.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        _serve(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5])
    else:
        main()
