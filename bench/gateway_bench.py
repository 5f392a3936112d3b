"""The gateway's cost, on the same ASGI app (the demo API) with and without
SentinelGateway, in one run:
- `gateway_overhead_us=`: the median added time per call, called through the ASGI
  interface (no network, so the figure is the middleware's own request path; the events
  are built later, by the producer's sender), the two apps in alternating rounds;
- `gateway_rps_ratio=`: calls per second with the middleware over without, each app
  served by uvicorn in a process of its own, the two at once on one core, kept saturated
  by pipelining clients on the other, the middleware's producer sending every event to a
  real broker (median of three such runs)."""

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
ROUNDS = 10
PAIRS = 3


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


async def _time(apps: list[Any], scope: dict[str, Any]) -> list[tuple[list[float], float]]:
    """Per-call times and calls per second of each app, measured in alternating rounds so
    that what this shared machine does meanwhile falls on every app alike."""
    for app in apps:
        for _ in range(500):  # warm up (and verify the token once)
            assert await _call(app, scope) == 200
    per_call: list[list[float]] = [[] for _ in apps]
    elapsed = [0.0] * len(apps)
    for _ in range(ROUNDS):
        for i, app in enumerate(apps):
            started = time.perf_counter()
            for _ in range(CALLS // ROUNDS):
                before = time.perf_counter()
                await _call(app, scope)
                per_call[i].append(time.perf_counter() - before)
            elapsed[i] += time.perf_counter() - started
    return [(times, len(times) / spent) for times, spent in zip(per_call, elapsed, strict=True)]


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
    """Calls per second of a server kept saturated: 8 keep-alive connections, each with
    16 requests in flight (HTTP/1.1 pipelining, answered in order), parsed with
    httptools. This client costs a few microseconds a call, so on a core of its own it
    does not limit the server on the other."""
    import httptools

    request = (
        f"GET /v1/items/3 HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
        "User-Agent: bench/1\r\n\r\n"
    ).encode()
    depth = 16
    done = 0
    until = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answered: list[int] = []

        class Responses:
            def on_message_complete(self) -> None:
                answered.append(parser.get_status_code())

        parser = httptools.HttpResponseParser(Responses())
        try:
            while time.perf_counter() < until:
                writer.write(request * depth)
                answered.clear()
                while len(answered) < depth:
                    chunk = await reader.read(65536)
                    if not chunk:
                        raise ConnectionError("the server closed the connection")
                    parser.feed_data(chunk)
                assert set(answered) == {200}, answered
                done += depth
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(8)))
    return done / (time.perf_counter() - started)


def _served_pair(keys_dir: str, token: str, bootstrap: str) -> tuple[float, float]:
    """Calls per second (without, with the middleware) of the two servers run at once,
    both on core 0 and both kept saturated by clients on core 1: the scheduler gives each
    half the core, and whatever this shared machine does meanwhile falls on both alike,
    so their ratio is the ratio of their capacities."""
    from sentinel_usage.cli.tansu import free_port

    ports = [free_port(), free_port()]
    servers = [
        subprocess.Popen(
            [sys.executable, __file__, "--serve", keys_dir, str(port), str(guarded), bootstrap],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        for port, guarded in zip(ports, (0, 1), strict=True)
    ]
    for server in servers:
        os.sched_setaffinity(server.pid, {0})
    os.sched_setaffinity(0, {1})

    async def both(seconds: float) -> list[float]:
        return list(await asyncio.gather(*(_http_rps(port, token, seconds) for port in ports)))

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                asyncio.run(both(1))  # also the warm-up
                break
            except OSError:  # not listening yet
                assert time.monotonic() < deadline, "the servers did not start"
                time.sleep(0.2)
        without, with_gateway = asyncio.run(both(8))
        return without, with_gateway
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


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
    (without, rps_without), (with_gateway, rps_with) = asyncio.run(_time([bare, guarded], scope))
    overhead_us = (statistics.median(with_gateway) - statistics.median(without)) * 1e6
    print(
        f"gateway: {CALLS} calls each; median {statistics.median(without) * 1e6:.0f} us "
        f"without, {statistics.median(with_gateway) * 1e6:.0f} us with; "
        f"{rps_without:.0f} vs {rps_with:.0f} calls/s"
    )
    token = _token(keys)
    with TansuBroker() as broker:
        pairs = [_served_pair(keys_dir, token, broker.bootstrap_servers) for _ in range(PAIRS)]
    ratios = [with_ / without for without, with_ in pairs]
    print(
        f"gateway: in-process ratio {rps_with / rps_without:.2f}; served by uvicorn, both "
        "servers at once on one core, saturated: "
        + ", ".join(f"{without:.0f} → {with_:.0f} calls/s" for without, with_ in pairs)
    )
    ratio = statistics.median(ratios)
    print(f"gateway_overhead_us={overhead_us:.0f} gateway_rps_ratio={ratio:.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        _serve(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5])
    else:
        main()
