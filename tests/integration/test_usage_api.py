"""GET .../usage through the API: the seeds' figures, and the percentiles beside p95
on request, each within 1% of the exact value over the raw log."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.analytics.rollups import RollupStore
from sentinel_usage.analytics.writer import ActivityLogWriter
from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.wire import BATCH_SCHEMA
from sentinel_usage.stream.decode import DeadLetter, SourceRecord
from sentinel_usage.stream.sink import UsageSink
from sentinel_usage.stream.windows import UsageWindows
from tests.factories import raw_event
from tests.integration.conftest import bearer
from tests.stream_support import InMemoryWindowStore
from tests.workload import exact_percentile

PROJECT = "proj-usage"
READ = bearer([PROJECT], ["usage:read"])


@pytest.fixture(scope="module")
def pass_with_traffic(clickhouse: ClickHouse) -> dict[str, Any]:
    """2,000 requests over the last hours, latencies log-normal, through the real sink."""

    async def nowhere(dead: DeadLetter) -> None:
        raise AssertionError(dead)

    async def no_changelog() -> None:
        pass

    sink = UsageSink(
        ActivityLogWriter(clickhouse),
        RollupStore(clickhouse),
        UsageWindows(InMemoryWindowStore()),
        nowhere,
        no_changelog,
        EventValidator(),
    )
    pass_id = f"SP-{uuid.uuid4().hex[:8]}"
    rng = random.Random(5)
    now = datetime.now(UTC)
    events = [
        raw_event(
            project_id=PROJECT,
            pass_id=pass_id,
            started_at=(now - timedelta(minutes=rng.uniform(1, 600))).isoformat(),
            duration_ms=round(rng.lognormvariate(4.0, 1.0), 3),
        )
        for _ in range(2000)
    ]
    payloads = [
        orjson.dumps({"schema": BATCH_SCHEMA, "events": events[i : i + 500]})
        for i in range(0, len(events), 500)
    ]
    records = [SourceRecord("e", 0, i, None, p) for i, p in enumerate(payloads)]
    asyncio.run(sink.process(records))
    return {"pass_id": pass_id, "durations": [e["duration_ms"] for e in events]}


def usage(api_client: TestClient, pass_id: str, **params: str) -> Any:
    return api_client.get(
        f"/v1/projects/{PROJECT}/passes/{pass_id}/usage", params=params, headers=READ
    )


def test_percentiles_on_request_are_within_one_percent(
    api_client: TestClient, pass_with_traffic: dict[str, Any]
) -> None:
    pass_id, durations = pass_with_traffic["pass_id"], pass_with_traffic["durations"]
    body = usage(api_client, pass_id, percentiles="50,90,95,99").json()
    metrics = body["metrics"]
    assert metrics["total_requests"] == len(durations)
    for p in (50, 90, 95, 99):
        exact = exact_percentile(durations, p)
        assert exact is not None
        assert abs(metrics[f"p{p}_latency_ms"] - exact) <= 0.01 * exact + 0.001, p
    busy = [b for b in body["timeline"] if b["total_requests"]]
    assert busy
    assert all({"p50_latency_ms", "p99_latency_ms"} <= set(b) for b in busy)
    assert "p75_latency_ms" not in metrics  # only what was asked for


def test_the_default_answer_is_the_seeds_p95_alone(
    api_client: TestClient, pass_with_traffic: dict[str, Any]
) -> None:
    body = usage(api_client, pass_with_traffic["pass_id"]).json()
    assert body["metrics"]["p95_latency_ms"] is not None
    assert not [k for k in body["metrics"] if k.startswith("p") and k != "p95_latency_ms"
                and k.endswith("_latency_ms")]  # fmt: skip
    assert "p50_latency_ms" not in body["timeline"][-1]


@pytest.mark.parametrize("bad", ["", "42", "50,", "p50", "50;99", "100"])
def test_a_percentile_not_offered_is_a_422_that_says_where(
    api_client: TestClient, pass_with_traffic: dict[str, Any], bad: str
) -> None:
    response = usage(api_client, pass_with_traffic["pass_id"], percentiles=bad)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", "percentiles"]
