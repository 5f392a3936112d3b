"""Error-rate alerts end to end, with short windows: the real broker, the real ClickHouse
engine, a real HTTP receiver standing in for Alertmanager (down for a while, then up),
and a worker killed while an alert fires."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from sentinel_usage.cli.tansu import free_port
from sentinel_usage.core.windows import window_start
from tests.e2e.stack import start_stack
from tests.factories import raw_event

SHORT = {
    "SENTINEL_WINDOW_SECONDS": "5",
    "SENTINEL_ALERT_WINDOW_SECONDS": "20",
    "SENTINEL_ALERT_EVERY_SECONDS": "1",
}


class Receiver:
    """An Alertmanager stand-in that records every POST /api/v2/alerts."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.refused = 0
        self.down = True
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.down or self.path != "/api/v2/alerts":
                    receiver.refused += 1
                    self.send_response(503)
                else:
                    receiver.received += json.loads(body)
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def with_state(self, pass_id: str, resolved: bool) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        return [
            a
            for a in self.received
            if a["labels"]["pass_id"] == pass_id
            and (datetime.fromisoformat(a["endsAt"].replace("Z", "+00:00")) <= now) is resolved
        ]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.server.shutdown()


class AlertTopic:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.messages: list[dict[str, Any]] = []
        self._consumer: AIOKafkaConsumer | None = None

    async def poll(self) -> list[dict[str, Any]]:
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                "sentinel.usage.alerts",
                bootstrap_servers=self.bootstrap,
                auto_offset_reset="earliest",
            )
            await self._consumer.start()
        fetched = await self._consumer.getmany(timeout_ms=300)
        self.messages += [json.loads(m.value) for ms in fetched.values() for m in ms]
        return self.messages

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()


def traffic(project: str, pass_id: str, requests: int, errors: int) -> list[dict[str, Any]]:
    """`requests` events 10 ms apart, all in the last whole 5 s window (SHORT): a burst
    that straddled a window boundary would, once its older window left the trailing
    range, be judged on its newer part alone (4 errors in 25 requests fire)."""
    now = datetime.now(UTC)
    start = window_start(now, timedelta(seconds=5)) - timedelta(seconds=5)
    return [
        raw_event(
            project_id=project,
            pass_id=pass_id,
            started_at=(start + timedelta(milliseconds=10 * i)).isoformat(),
            status_code=500 if i < errors else 200,
        )
        for i in range(requests)
    ]


async def wait_for(check: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} not within {within} s")


async def test_alert_lifecycle(
    own_broker: str, tmp_path: Path, receiver: Receiver, artifacts_dir: Path
) -> None:
    project = f"proj-{uuid.uuid4().hex[:6]}"
    noisy, fine, tiny = (f"SP-{name}-{uuid.uuid4().hex[:4]}" for name in ("noisy", "fine", "tiny"))
    env = {**SHORT, "KAFKA_BOOTSTRAP_SERVERS": own_broker,
           "SENTINEL_ALERTMANAGER_URL": f"http://127.0.0.1:{receiver.port}"}  # fmt: skip
    topic = AlertTopic(own_broker)
    stack = start_stack(tmp_path / "var", **env)
    try:
        with stack.client([project]) as http:
            first_failure = time.monotonic()
            for pass_id, requests, errors in ((noisy, 100, 10), (fine, 100, 4), (tiny, 5, 3)):
                assert (
                    http.post(
                        "/v1/events", json=traffic(project, pass_id, requests, errors)
                    ).json()["accepted"]
                    == requests
                )

        async def fired() -> list[dict[str, Any]]:
            return [
                m for m in await topic.poll() if m["pass_id"] == noisy and m["state"] == "firing"
            ]

        (alert,) = await wait_for(fired, 20, "the firing alert")
        delay = time.monotonic() - first_failure
        assert alert["project_id"] == project
        assert (alert["requests"], alert["errors"], alert["error_rate"]) == (100, 10, 0.1)
        assert alert["resolved_at"] is None
        for key in ("alert_id", "window_start", "window_end", "fired_at"):
            assert alert[key]

        with stack.client([project], ["usage:read"]) as http:
            firing = http.get(f"/v1/projects/{project}/alerts", params={"state": "firing"}).json()
            assert [a["pass_id"] for a in firing["items"]] == [noisy]
            assert http.get(f"/v1/projects/{project}/passes/{fine}/alerts").json()["items"] == []
        metrics = stack.metric("sentinel_alerts_firing")
        assert metrics == 1.0
    finally:
        stack.stop(signal.SIGKILL)  # killed while the alert fires

    receiver.down = False  # Alertmanager comes back while the worker is down
    stack = start_stack(tmp_path / "var", **env)
    try:
        await asyncio.sleep(3)  # several evaluation rounds after the restart, rule still holding
        assert [m["state"] for m in await topic.poll() if m["pass_id"] == noisy] == ["firing"]

        async def resolved() -> list[dict[str, Any]]:
            return [
                m for m in await topic.poll() if m["pass_id"] == noisy and m["state"] == "resolved"
            ]

        (done,) = await wait_for(resolved, 60, "the resolution")
        assert done["alert_id"] == alert["alert_id"]
        assert done["resolved_at"] is not None
        with stack.client([project], ["usage:read"]) as http:
            items = http.get(f"/v1/projects/{project}/passes/{noisy}/alerts").json()["items"]
            assert [(a["alert_id"], a["state"]) for a in items] == [(alert["alert_id"], "resolved")]
        states = {m["pass_id"] for m in await topic.poll()}
        assert fine not in states
        assert tiny not in states

        async def delivered() -> bool:
            return bool(receiver.with_state(noisy, resolved=True))

        await wait_for(delivered, 20, "the resolution at Alertmanager")
    finally:
        stack.stop()
        await topic.close()
    assert receiver.refused >= 1  # it was down at first, and the notifier retried
    firing_posts = receiver.with_state(noisy, resolved=False) or [
        a for a in receiver.received if a["labels"]["pass_id"] == noisy
    ]
    labels = firing_posts[0]["labels"]
    assert labels == {"alertname": "SentinelPassErrorRateHigh", "project_id": project,
                      "pass_id": noisy, "severity": "warning"}  # fmt: skip
    assert firing_posts[0]["startsAt"].startswith(alert["fired_at"][:19])
    print(f"first failing request -> alert on the topic: {delay * 1000:.0f} ms")
    (artifacts_dir / "alert_delay_ms.txt").write_text(f"{delay * 1000:.0f}\n")
