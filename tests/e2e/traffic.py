"""Traffic for the durability and fault tests: a steady sender that remembers what
was acknowledged, and readers of what the stack holds (through its API only)."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from tests.e2e.stack import Stack

REQUEST_TYPES = ("api_request", "error")


@dataclass
class Ledger:
    """Every event attempted, by id, and the ids the API acknowledged (202)."""

    attempted: dict[str, dict[str, Any]] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, events: list[dict[str, Any]], acked: bool) -> None:
        with self.lock:
            for event in events:
                self.attempted.setdefault(event["event_id"], event)
            if acked:
                self.acked.update(e["event_id"] for e in events)


class Workload:
    """Events of several passes of one project: now-ish, some late (up to 50 minutes),
    some sent again in a later request (the same content, or a new `started_at`: the
    same event all the same, the first version counts)."""

    def __init__(self, project: str, passes: int, seed: int) -> None:
        self.project = project
        self.passes = [f"SP-{seed}-{n}" for n in range(passes)]
        self._rng = random.Random(seed)
        self._sent: list[dict[str, Any]] = []

    def batch(self, size: int) -> list[dict[str, Any]]:
        rng = self._rng
        events = []
        for _ in range(size):
            if self._sent and rng.random() < 0.1:
                events.append(dict(rng.choice(self._sent)))  # a resend
                continue
            if self._sent and rng.random() < 0.03:  # a retry that stamped the time again
                restamped = dict(rng.choice(self._sent))
                restamped["started_at"] = datetime.now(UTC).isoformat(timespec="milliseconds")
                events.append(restamped)
                continue
            late = rng.random() < 0.05
            age = (
                timedelta(minutes=rng.uniform(10, 50))
                if late
                else timedelta(seconds=rng.uniform(0, 5))
            )
            kind = rng.choices(["api_request", "error", "token_generation"], [85, 5, 10])[0]
            event = {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "project_id": self.project,
                "pass_id": rng.choice(self.passes),
                "client_id": "agent-1",
                "activity_type": kind,
                "started_at": (datetime.now(UTC) - age).isoformat(timespec="milliseconds"),
                "endpoint": "/oauth/token"
                if kind == "token_generation"
                else rng.choice(["/v1/items/{id}", "/v1/orders", "/v1/search"]),
                "http_method": rng.choice(["GET", "POST"]),
                "status_code": None if kind == "error" else rng.choice([200, 200, 201, 404, 500]),
                "duration_ms": round(rng.lognormvariate(4, 0.8), 3),
            }
            events.append(event)
            self._sent.append(event)
        return events


class Sender(threading.Thread):
    """Posts batches to `stack` until stopped or the stack goes away."""

    def __init__(self, stack: Stack, workload: Workload, ledger: Ledger, size: int = 200) -> None:
        super().__init__(daemon=True)
        self._client = stack.client([workload.project])
        self._workload = workload
        self._ledger = ledger
        self._size = size
        self.stop = threading.Event()
        self.requests = 0

    def run(self) -> None:
        with self._client:
            while not self.stop.is_set():
                events = self._workload.batch(self._size)
                try:
                    response = self._client.post("/v1/events", json=events)
                except httpx.TransportError:
                    self._ledger.record(events, acked=False)
                    return
                acked = response.status_code == 202
                if acked:
                    assert response.json()["accepted"] == len(events), response.text
                self._ledger.record(events, acked=acked)
                self.requests += 1


def stored_ids(stack: Stack, project: str, pass_id: str) -> list[str]:
    """Every event id the activity log holds for the pass, through the export API."""
    ids: list[str] = []
    params: dict[str, Any] = {"format": "jsonl"}
    with stack.client([project]) as http:
        while True:
            response = http.get(
                f"/v1/projects/{project}/passes/{pass_id}/activity/export", params=params
            )
            if response.status_code == 404:
                return ids
            response.raise_for_status()
            ids += [orjson.loads(line)["event_id"] for line in response.content.splitlines()]
            cursor = response.headers.get("X-Next-Cursor")
            if not cursor:
                return ids
            params = {"format": "jsonl", "cursor": cursor}


def usage_metrics(stack: Stack, project: str, pass_id: str) -> dict[str, Any]:
    with stack.client([project]) as http:
        response = http.get(
            f"/v1/projects/{project}/passes/{pass_id}/usage", params={"range": "24h"}
        )
        response.raise_for_status()
        return dict(response.json()["metrics"])


@dataclass
class Verdict:
    acked: int
    stored: int
    lost: int
    doubled: int
    count_errors: list[str]

    def line(self) -> str:
        return (
            f"acknowledged={self.acked} stored={self.stored} lost={self.lost} "
            f"counted_twice={self.doubled} count_mismatches={len(self.count_errors)}"
        )


def verify(stack: Stack, workload: Workload, ledger: Ledger) -> Verdict:
    """Every acknowledged event stored once; counts equal the deduplicated raw log."""
    stored: Counter[str] = Counter()
    errors = []
    for pass_id in workload.passes:
        ids = stored_ids(stack, workload.project, pass_id)
        stored.update(ids)
        events = [ledger.attempted[i] for i in set(ids)]
        requests = [e for e in events if e["activity_type"] in REQUEST_TYPES]
        want = {
            "total_requests": len(requests),
            "error_count": sum(
                1 for e in requests
                if e["activity_type"] == "error" or (e["status_code"] or 0) >= 400
            ),
            "token_generations": len(events) - len(requests),
        }  # fmt: skip
        if not events:
            continue
        got = usage_metrics(stack, workload.project, pass_id)
        for name, value in want.items():
            if got[name] != value:
                errors.append(f"{pass_id} {name}: usage {got[name]}, raw log {value}")
    lost = len(ledger.acked - set(stored))
    doubled = sum(n - 1 for n in stored.values() if n > 1)
    return Verdict(len(ledger.acked), len(stored), lost, doubled, errors)
