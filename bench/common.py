"""Shared pieces of the benchmarks: synthetic events, topic filling, process memory."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from sentinel_usage.core.columns import validate_events
from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.wire import BATCH_SCHEMA, pack_columns

ENDPOINTS = ["/v1/items/{id}", "/v1/orders", "/v1/search", "/v1/users/{id}", "/v1/reports"]


# The traffic the events stand for: `n` events spread evenly over the last SPAN,
# each up to JITTER off its place (gateways' clocks and buffers), and a fraction
# LATE from anywhere in the last hour (a gateway that was cut off, then caught up).
SPAN = timedelta(minutes=10)
JITTER_SECONDS = 5.0
LATE = 0.01


def events(n: int, passes: int, seed: int = 1, project: str = "bench") -> list[dict[str, Any]]:
    """Synthetic events in time order, as a gateway fleet produces them."""
    rng = random.Random(seed)
    now = datetime.now(UTC) - timedelta(seconds=JITTER_SECONDS)
    start = now - SPAN
    step = SPAN / max(n, 1)
    out = []
    for i in range(n):
        if rng.random() < LATE:
            started = now - timedelta(seconds=rng.uniform(0, 3600))
        else:
            started = start + step * i + timedelta(seconds=rng.uniform(-1, 1) * JITTER_SECONDS)
        status = 500 if rng.random() < 0.03 else 200
        out.append(
            {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "project_id": project,
                "pass_id": f"SP-{i % passes}",
                "client_id": "agent-1",
                "activity_type": "token_generation" if i % 20 == 0 else "api_request",
                "started_at": started.isoformat(timespec="milliseconds"),
                "endpoint": ENDPOINTS[i % len(ENDPOINTS)],
                "http_method": "GET",
                "status_code": status,
                "duration_ms": round(rng.lognormvariate(4.5, 0.8), 3),
                "client_ip": "203.0.113.9",
                "user_agent": "agent/1.0",
            }
        )
    return out


async def fill_topic(
    bootstrap: str,
    topic: str,
    items: list[dict[str, Any]],
    per_message: int,
    columnar: bool = False,
) -> int:
    """Write `items` as envelopes of `per_message` events of one pass (or bare events
    when per_message is 1), in the order the events come, as a gateway's producer
    packs them (a pass's envelope goes when it is full); returns the number of messages.
    `columnar`: the envelopes as the HTTP ingest writes them (sentinel.usage.batch/2,
    validated here, before the clock starts)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=20, max_request_size=4 * 1024 * 1024,
        max_batch_size=1024 * 1024,
    )  # fmt: skip
    await producer.start()
    pending: dict[str, list[dict[str, Any]]] = {}
    sent = 0
    futures: list[asyncio.Future[Any]] = []

    async def send(pass_id: str, chunk: list[dict[str, Any]]) -> None:
        nonlocal sent, futures
        if columnar:
            (envelope,) = pack_columns(validate_events(chunk, EventValidator()).table)
            value = envelope.payload
        elif per_message == 1:
            value = orjson.dumps(chunk[0])
        else:
            value = orjson.dumps({"schema": BATCH_SCHEMA, "events": chunk})
        futures.append(await producer.send(topic, value, key=pass_id.encode()))
        sent += 1
        if len(futures) >= 2000:
            await asyncio.gather(*futures)
            futures = []

    try:
        for item in items:
            chunk = pending.setdefault(item["pass_id"], [])
            chunk.append(item)
            if len(chunk) >= per_message:
                await send(item["pass_id"], pending.pop(item["pass_id"]))
        for pass_id, chunk in pending.items():
            await send(pass_id, chunk)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0
