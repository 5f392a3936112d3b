"""GET .../usage through the API: the seeds' figures, and the percentiles beside p95
on request, each within 1% of the exact value over the raw log."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.analytics.rollups import RollupStore
from sentinel_usage.analytics.writer import ActivityLogWriter
from sentinel_usage.api.app import create_app
from sentinel_usage.api.services import build_services
from sentinel_usage.core.aggregate import WindowState
from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.settings import Settings
from sentinel_usage.core.wire import BATCH_SCHEMA
from sentinel_usage.stream.decode import DeadLetter, SourceRecord
from sentinel_usage.stream.sink import UsageSink
from sentinel_usage.stream.windows import UsageWindows
from tests.factories import raw_event
from tests.integration.conftest import SECRET, bearer
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
    endpoints = ["/v1/items/{id}", "/v1/orders", "/v1/search", "/v1/slow"]
    events = [
        raw_event(
            project_id=PROJECT,
            pass_id=pass_id,
            started_at=(now - timedelta(minutes=rng.uniform(1, 600))).isoformat(),
            duration_ms=round(rng.lognormvariate(4.0, 1.0), 3),
            endpoint=rng.choice(endpoints[: 1 + i % 4]),  # unequal shares
            status_code=rng.choice([200, 200, 200, 201, 304, 404, 500]),
            activity_type="token_generation" if i % 25 == 0 else "api_request",
        )
        for i in range(2000)
    ]
    payloads = [
        orjson.dumps({"schema": BATCH_SCHEMA, "events": events[i : i + 500]})
        for i in range(0, len(events), 500)
    ]
    records = [SourceRecord("e", 0, i, None, p) for i, p in enumerate(payloads)]
    asyncio.run(sink.process(records))
    requests = [e for e in events if e["activity_type"] != "token_generation"]
    return {
        "pass_id": pass_id,
        "durations": [e["duration_ms"] for e in requests],
        "requests": requests,
    }


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


def test_the_endpoint_breakdown_is_exact_and_its_latencies_within_one_percent(
    api_client: TestClient, pass_with_traffic: dict[str, Any]
) -> None:
    pass_id, requests = pass_with_traffic["pass_id"], pass_with_traffic["requests"]
    by_endpoint: dict[str, list[dict[str, Any]]] = {}
    for event in requests:
        by_endpoint.setdefault(event["endpoint"], []).append(event)
    body = api_client.get(
        f"/v1/projects/{PROJECT}/passes/{pass_id}/endpoints",
        params={"range": "24h", "per_page": 3},
        headers=READ,
    ).json()
    assert body["total"] == len(by_endpoint) == 4
    ranked = sorted(by_endpoint, key=lambda e: (-len(by_endpoint[e]), e))
    assert [item["endpoint"] for item in body["items"]] == ranked[:3]  # paged: 3 of 4
    for item in body["items"]:
        mine = by_endpoint[item["endpoint"]]
        errors = sum(1 for e in mine if e["status_code"] >= 400)
        assert (item["total_requests"], item["error_count"]) == (len(mine), errors)
        assert item["error_rate"] == pytest.approx(errors / len(mine))
        durations = [e["duration_ms"] for e in mine]
        assert item["avg_latency_ms"] == pytest.approx(sum(durations) / len(durations), abs=1e-3)
        exact = exact_percentile(durations, 95)
        assert exact is not None
        assert abs(item["p95_latency_ms"] - exact) <= 0.01 * exact + 0.001
    codes = Counter(e["status_code"] for e in requests)
    classes = Counter(f"{code // 100}xx" for code in [e["status_code"] for e in requests])
    assert body["status_codes"]["classes"] == dict(classes)
    top = [(c["status_code"], c["count"]) for c in body["status_codes"]["top"]]
    assert top == sorted(codes.items(), key=lambda item: (-item[1], item[0]))[:5]
    second = api_client.get(
        f"/v1/projects/{PROJECT}/passes/{pass_id}/endpoints",
        params={"range": "24h", "per_page": 3, "page": 2},
        headers=READ,
    ).json()
    assert [item["endpoint"] for item in second["items"]] == ranked[3:]


def test_another_projects_pass_has_no_endpoints_to_show(
    api_client: TestClient, pass_with_traffic: dict[str, Any]
) -> None:
    other = bearer(["other-project"], ["usage:read"])
    response = api_client.get(
        f"/v1/projects/other-project/passes/{pass_with_traffic['pass_id']}/endpoints",
        headers=other,
    )
    assert response.status_code == 404


def test_a_pass_whose_raw_rows_aged_out_is_still_served_from_the_day_tier(
    api_client: TestClient, clickhouse: ClickHouse
) -> None:
    pass_id = f"SP-{uuid.uuid4().hex[:8]}"  # no registry record, no raw row
    assert usage(api_client, pass_id).status_code == 404
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    old = WindowState(PROJECT, pass_id, day - timedelta(days=200), 86_400)
    old.aggregate.total_requests = old.aggregate.success_count = 5
    RollupStore(clickhouse).write([old])
    assert usage(api_client, pass_id).status_code == 200
    overview = api_client.get(f"/v1/projects/{PROJECT}/passes/{pass_id}/overview", headers=READ)
    assert overview.json()["total_requests"] == 5


def test_a_range_older_than_the_retention_says_it_is_partial(
    api_client: TestClient,
    pass_with_traffic: dict[str, Any],
    clickhouse: ClickHouse,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    pass_id = pass_with_traffic["pass_id"]
    kept = usage(api_client, pass_id, range="30d").json()["retention"]
    # UTC days are answered by the day tier, another zone's by the 15-minute tier
    assert (kept["days"], kept["partial"]) == (400, False)
    kept = usage(api_client, pass_id, range="30d", tz="Asia/Kolkata").json()["retention"]
    assert (kept["days"], kept["partial"]) == (90, False)
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        jwt_secret=SECRET,  # type: ignore[arg-type]
        data_dir=tmp_path,
        quarter_hour_retention_days=7,
        day_retention_days=7,
    )
    with TestClient(create_app(build_services(settings, clickhouse=clickhouse))) as short:
        month = usage(short, pass_id, range="30d").json()
        week = usage(short, pass_id, range="7d").json()
    assert month["retention"]["partial"] is True
    assert month["retention"]["held_from"] > month["from"]  # ISO text orders as time
    assert week["retention"]["partial"] is False
    assert week["retention"]["held_from"] <= week["from"]
