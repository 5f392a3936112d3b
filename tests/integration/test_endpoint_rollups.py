"""The endpoint breakdown's hourly rollup (migration 0008) on the real engine: filled by
its view from what the sink inserts, exact under redelivery, late events and an insert
retried after a failure that had written all the same; the range's edges finer than an
hour read from the raw log."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.analytics.endpoints import EndpointQuery
from sentinel_usage.analytics.rollups import RollupStore
from sentinel_usage.analytics.scope import ProjectScope
from sentinel_usage.analytics.writer import ActivityLogWriter
from sentinel_usage.core.errors import StorageError
from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.wire import BATCH_SCHEMA
from sentinel_usage.stream.decode import DeadLetter, SourceRecord
from sentinel_usage.stream.sink import RetryPolicy, SinkPolicy, UsageSink
from sentinel_usage.stream.windows import UsageWindows
from tests.factories import raw_event
from tests.stream_support import InMemoryWindowStore
from tests.workload import exact_percentile

PROJECT = "proj-endpoint-rollups"


class WritesThenFails(ActivityLogWriter):
    """Its first insert lands and then reports a failure (a timeout after the server
    took the rows): the sink retries it."""

    failed = False

    def write(self, events: Any) -> int:
        written = super().write(events)
        if not self.failed:
            self.failed = True
            raise StorageError("the answer to the insert timed out")
        return written


def sink(writer: ActivityLogWriter, clickhouse: ClickHouse) -> UsageSink:
    async def nowhere(dead: DeadLetter) -> None:
        raise AssertionError(dead)

    async def no_changelog() -> None:
        pass

    return UsageSink(
        writer,
        RollupStore(clickhouse),
        UsageWindows(InMemoryWindowStore()),
        nowhere,
        no_changelog,
        EventValidator(),
        policy=SinkPolicy(retry=RetryPolicy(first_delay=0.01)),
    )


def records(events: list[dict[str, Any]], first_offset: int) -> list[SourceRecord]:
    payloads = [
        orjson.dumps({"schema": BATCH_SCHEMA, "events": events[i : i + 300]})
        for i in range(0, len(events), 300)
    ]
    return [SourceRecord("e", 0, first_offset + i, None, p) for i, p in enumerate(payloads)]


def test_the_breakdown_is_exact_under_redelivery_late_events_and_a_retried_insert(
    clickhouse: ClickHouse,
) -> None:
    pass_id = f"SP-{uuid.uuid4().hex[:8]}"
    rng = random.Random(17)
    now = datetime.now(UTC)

    def event(minutes_ago: float) -> dict[str, Any]:
        return raw_event(
            project_id=PROJECT,
            pass_id=pass_id,
            started_at=(now - timedelta(minutes=minutes_ago)).isoformat(),
            duration_ms=round(rng.lognormvariate(3.5, 1.2), 3),
            endpoint=rng.choice(["/v1/items/{id}", "/v1/items/{id}", "/v1/orders", "/v1/x"]),
            status_code=rng.choice([200, 200, 201, 404, 503]),
        )

    on_time = [event(rng.uniform(0.5, 300)) for _ in range(1500)]
    late = [event(rng.uniform(200, 290)) for _ in range(300)]  # hours behind, sent after
    worker = sink(WritesThenFails(clickhouse), clickhouse)
    asyncio.run(worker.process(records(on_time, 0)))
    assert isinstance(worker.writer, WritesThenFails)
    assert worker.writer.failed
    asyncio.run(worker.process(records(on_time[:600], 0)))  # redelivered
    asyncio.run(worker.process(records(late + on_time[100:200], 10)))  # late, and resent

    # Edges finer than an hour on both sides: they come from the raw log.
    start, end = now - timedelta(minutes=277), now - timedelta(minutes=3)
    page = EndpointQuery(clickhouse).endpoints(ProjectScope(PROJECT), pass_id, start, end, 10, 0)

    within = [e for e in on_time + late if start <= datetime.fromisoformat(e["started_at"]) < end]
    by_endpoint: dict[str, list[dict[str, Any]]] = {}
    for e in within:
        by_endpoint.setdefault(e["endpoint"], []).append(e)
    assert page.total == len(by_endpoint)
    for item in page.items:
        mine = by_endpoint[item.endpoint]
        errors = sum(1 for e in mine if e["status_code"] >= 400)
        assert (item.total_requests, item.error_count) == (len(mine), errors)
        durations = [e["duration_ms"] for e in mine]
        assert abs(item.latency_sum_ms - sum(durations)) < 1e-6 * len(durations)
        exact = exact_percentile(durations, 95)
        assert exact is not None
        assert item.p95_latency_ms is not None
        assert abs(item.p95_latency_ms - exact) <= 0.01 * exact + 0.001
    assert page.status_codes == dict(Counter(e["status_code"] for e in within))

    # The whole hours in between were answered by the rollup, which holds each event once.
    ((held,),) = clickhouse.unscoped_rows(
        "SELECT sum(requests) FROM endpoint_rollups WHERE pass_id = {p:String}",
        {"p": pass_id},
        what="test",
    )
    assert held == len(on_time) + len(late)


def test_a_partition_taken_over_after_its_owner_died_is_not_counted_twice(
    clickhouse: ClickHouse,
) -> None:
    """Worker A inserts and dies before its commit; worker B, whose id filter was loaded
    before A's insert, gets the partition and its records again. B tops its filter up
    when the partition is assigned, so it drops them instead of inserting them again."""
    pass_id = f"SP-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    events = [
        raw_event(
            project_id=PROJECT,
            pass_id=pass_id,
            started_at=(now - timedelta(minutes=2 * i)).isoformat(),
        )
        for i in range(400)
    ]
    a = sink(ActivityLogWriter(clickhouse), clickhouse)
    b = sink(ActivityLogWriter(clickhouse), clickhouse)
    unrelated = [raw_event(project_id=PROJECT, pass_id=f"SP-{uuid.uuid4().hex[:8]}")]
    asyncio.run(b.process(records(unrelated, 0)))  # B's filter is loaded, A's rows not in it
    asyncio.run(a.process(records(events, 0)))  # ... and A dies before its commit
    b.partitions_assigned()
    asyncio.run(b.process(records(events, 0)))
    ((held,),) = clickhouse.unscoped_rows(
        "SELECT sum(requests) FROM endpoint_rollups WHERE pass_id = {p:String}",
        {"p": pass_id},
        what="test",
    )
    assert held == 400
