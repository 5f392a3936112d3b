"""HTTP ingest throughput and ingest-to-visible freshness against a running `up`."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

from bench.common import events
from sentinel_usage.api.auth import issue_token
from sentinel_usage.cli.tansu import free_port

REPO = Path(__file__).resolve().parent.parent
JSON = {"content-type": "application/json"}
WARM_UP_EVENTS = 20_000


def start_up(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`up` as `make run` starts it: its own embedded broker, so the ingest measured is
    the durable one (journal fsync and broker acknowledgement)."""
    port = free_port()
    log = data_dir / "up.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    environment = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    process = subprocess.Popen(
        [sys.executable, "-m", "sentinel_usage.cli.main", "up"],
        env={
            **environment,
            "PYTHONPATH": str(REPO),
            "SENTINEL_DATA_DIR": str(data_dir),
            "SENTINEL_API_PORT": str(port),
            "SENTINEL_LOG_LEVEL": "WARNING",
            "SENTINEL_METRICS_PORT": "0",
        },
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if re.search(r"is up", log.read_text(errors="replace")):
            try:
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    return process, base
            except httpx.TransportError:
                pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(log.read_text())


async def ingest(
    base: str, headers: dict[str, str], items: list[dict[str, Any]], clients: int
) -> float:
    # Bodies are encoded before the clock starts (and with orjson), and the clients are
    # aiohttp's (httpx's spent 0.23 of this machine's two cores at 80k events/s, twice
    # aiohttp's): they share the machine with the server, and are not what is measured.
    chunks = [orjson.dumps(items[i : i + 1000]) for i in range(0, len(items), 1000)]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for chunk in chunks:
        queue.put_nowait(chunk)

    async def client() -> None:
        async with aiohttp.ClientSession(base_url=base, headers={**headers, **JSON}) as http:
            while not queue.empty():
                async with http.post("/v1/events", data=queue.get_nowait()) as response:
                    assert response.status == 202, await response.text()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return len(items) / (time.perf_counter() - started)


async def freshness(
    base: str, headers: dict[str, str], background_eps: float, samples: int = 20
) -> tuple[list[float], list[float]]:
    stop = asyncio.Event()

    async def load() -> None:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
            batch = 1000
            interval = batch / max(background_eps, 1)
            seed = 100
            while not stop.is_set():
                t0 = time.perf_counter()
                seed += 1
                await http.post("/v1/events", json=events(batch, 50, seed=seed))
                await asyncio.sleep(max(0.0, interval - (time.perf_counter() - t0)))

    loader = asyncio.create_task(load())
    rows, timeline = [], []
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        for _ in range(samples):
            pass_id = f"SP-fresh-{uuid.uuid4().hex[:8]}"
            event = events(1, 1, seed=int(time.time_ns() % 1_000_000))[0]
            event.update(
                pass_id=pass_id,
                started_at=datetime.now(UTC).isoformat(),
                activity_type="api_request",
            )
            response = await http.post("/v1/events", json=event)
            assert response.status_code == 202
            t0 = time.perf_counter()
            seen_row = seen_timeline = None
            deadline = t0 + 15
            while (seen_row is None or seen_timeline is None) and time.perf_counter() < deadline:
                if seen_row is None:
                    r = await http.get(f"/v1/projects/bench/passes/{pass_id}/activity")
                    if r.status_code == 200 and r.json()["total"] == 1:
                        seen_row = time.perf_counter() - t0
                if seen_timeline is None:
                    r = await http.get(f"/v1/projects/bench/passes/{pass_id}/usage")
                    if r.status_code == 200 and r.json()["timeline"][-1]["total_requests"] == 1:
                        seen_timeline = time.perf_counter() - t0
                # A 25 ms probe: finer polling of two endpoints (each a ClickHouse query,
                # serialised with the sink's inserts in chDB) would load what it measures.
                await asyncio.sleep(0.025)
            rows.append((seen_row if seen_row is not None else float("inf")) * 1000)
            timeline.append((seen_timeline if seen_timeline is not None else float("inf")) * 1000)
    stop.set()
    await loader
    return rows, timeline


def run(tmp: Path, ingest_events: int, stream_eps: float | None) -> dict[str, float]:
    process, base = start_up(tmp / "http")
    secret = (tmp / "http" / "jwt_secret").read_text().strip()
    headers = {
        "Authorization": "Bearer " + issue_token(secret, ["bench"], ["usage:read", "events:write"])
    }
    try:
        # A warm-up first, not timed: the clients' connections, the first call of each
        # code path, the worker's first batches and chDB's first parts. Without it a
        # 2-second run measured the start as much as the rate (its first 200,000 events
        # went 10-25% slower than the next 200,000, here).
        cold = asyncio.run(ingest(base, headers, events(WARM_UP_EVENTS, 100, seed=41), 8))
        eps = asyncio.run(ingest(base, headers, events(ingest_events, 100, seed=42), clients=8))
        print(f"ingest: {eps:.0f} events/s (warm-up, {WARM_UP_EVENTS:,} events: {cold:.0f}/s)")
        rows, timeline = asyncio.run(freshness(base, headers, (stream_eps or 10_000) / 2))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    p95 = sorted(rows)[int(0.95 * (len(rows) - 1))]
    t95 = sorted(timeline)[int(0.95 * (len(timeline) - 1))]
    print(f"fresh: activity p50 {statistics.median(rows):.0f} ms p95 {p95:.0f} ms; "
          f"timeline p50 {statistics.median(timeline):.0f} ms p95 {t95:.0f} ms")  # fmt: skip
    return {"ingest_eps": eps, "fresh_p95_ms": p95, "timeline_p95_ms": t95}
