"""Generated workloads and the expected figures computed from them, independently
of the pipeline's code (plain Python over the deduplicated events)."""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


@dataclass
class Workload:
    unique: list[dict[str, Any]]  # each event once
    sent: list[dict[str, Any]]  # in sending order, with resent copies


def generate(
    project: str,
    passes: list[str],
    n: int,
    now: datetime,
    spread: timedelta,
    seed: int = 7,
    resend_share: float = 0.2,
    latency: str = "lognormal",
) -> Workload:
    rng = random.Random(seed)
    unique = []
    for _ in range(n):
        kind = rng.choices(["api_request", "error", "token_generation"], [85, 5, 10])[0]
        status = None if kind == "error" else rng.choice([200, 200, 200, 201, 204, 400, 404, 500])
        started = now - timedelta(seconds=rng.uniform(1, spread.total_seconds()))
        unique.append(
            {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "project_id": project,
                "pass_id": rng.choice(passes),
                "client_id": "agent-1",
                "activity_type": kind,
                "started_at": started.isoformat(timespec="milliseconds"),
                "endpoint": rng.choice(
                    ["/v1/items/{id}", "/v1/orders", "/v1/users/{id}", "/v1/search"]
                )
                if kind != "token_generation"
                else "/oauth/token",
                "http_method": rng.choice(["GET", "POST"]),
                "status_code": status,
                "duration_ms": round(_latency(rng, latency), 3),
                "client_ip": "198.51.100.4",
            }
        )
    sent = list(unique)
    for event in rng.sample(unique, int(n * resend_share)):
        sent += [dict(event)] * rng.choice([1, 2])  # 2 or 3 copies in all
    rng.shuffle(sent)
    return Workload(unique, sent)


def _latency(rng: random.Random, shape: str) -> float:
    if shape == "pareto":
        return 20 * rng.paretovariate(1.5)
    return rng.lognormvariate(math.log(120), 0.9)


def started(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["started_at"]).astimezone(UTC)


def is_request(event: dict[str, Any]) -> bool:
    return event["activity_type"] in ("api_request", "error")


def succeeded(event: dict[str, Any]) -> bool:
    status = event["status_code"]
    return event["activity_type"] != "error" and status is not None and status < 400


def expected_counts(events: list[dict[str, Any]], start: datetime, end: datetime) -> dict[str, Any]:
    inside = [e for e in events if start <= started(e) < end]
    requests = [e for e in inside if is_request(e)]
    return {
        "total_requests": len(requests),
        "success_count": sum(1 for e in requests if succeeded(e)),
        "error_count": sum(1 for e in requests if not succeeded(e)),
        "token_generations": sum(1 for e in inside if not is_request(e)),
        "unique_endpoints": len({e["endpoint"] for e in requests}),
        "durations": [e["duration_ms"] for e in requests],
    }


def exact_percentile(durations: list[float], percentile: int) -> float | None:
    """The value at rank floor(p/100 * (n - 1)) of the sorted durations (the rank the
    API documents), computed here without the code under test."""
    if not durations:
        return None
    ordered = sorted(durations)
    return ordered[math.floor(percentile / 100 * (len(ordered) - 1))]


def exact_p95(durations: list[float]) -> float | None:
    return exact_percentile(durations, 95)


def assert_matches_log(total: Any, want: dict[str, Any]) -> None:
    """`total` (a UsageAggregate over some range) against `expected_counts` of the same
    range: counts exact, p50, p90, p95 and p99 within 1% of the exact values."""
    assert total.total_requests == want["total_requests"]
    assert total.success_count == want["success_count"]
    assert total.error_count == want["error_count"]
    assert total.token_generations == want["token_generations"]
    assert total.unique_endpoints == want["unique_endpoints"]
    truth = exact_p95(want["durations"])
    assert truth is not None
    assert total.p95_latency_ms is not None
    assert abs(total.p95_latency_ms - truth) <= 0.01 * truth
    for percentile in (50, 90, 99):
        exact = exact_percentile(want["durations"], percentile)
        got = total.latency_percentile_ms(percentile)
        assert exact is not None
        assert got is not None
        assert abs(got - exact) <= 0.01 * exact, (percentile, got, exact)
