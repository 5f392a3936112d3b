"""UsageSink + UsageQuery on the real ClickHouse engine: counts exact and p95 within 1%
under resends, redelivered batches, late events and window eviction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from sentinel_usage.analytics.rollups import RollupStore
from sentinel_usage.analytics.scope import ProjectScope
from sentinel_usage.analytics.usage import UsageQuery, UsageRange
from sentinel_usage.analytics.writer import ActivityLogWriter
from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.wire import BATCH_SCHEMA
from sentinel_usage.stream.decode import DeadLetter, SourceRecord
from sentinel_usage.stream.sink import SinkPolicy, UsageSink
from sentinel_usage.stream.windows import UsageWindows, WindowPolicy
from tests.stream_support import InMemoryWindowStore
from tests.workload import assert_matches_log, expected_counts, generate

PASSES = ["SP-A", "SP-B", "SP-C"]


def to_records(events: list[dict[str, Any]], per_message: int) -> list[SourceRecord]:
    """Envelopes keyed by pass, one partition per pass, offsets in order."""
    offsets = {p: 0 for p in PASSES}
    records = []
    for start in range(0, len(events), per_message):
        chunk = events[start : start + per_message]
        for pass_id in PASSES:
            mine = [e for e in chunk if e["pass_id"] == pass_id]
            if mine:
                partition = PASSES.index(pass_id)
                payload = orjson.dumps({"schema": BATCH_SCHEMA, "events": mine})
                records.append(
                    SourceRecord("events", partition, offsets[pass_id], pass_id.encode(), payload)
                )
                offsets[pass_id] += 1
    return records


@pytest.fixture(scope="module")
def loaded(clickhouse: Any) -> dict[str, Any]:
    project = f"proj-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    workload = generate(project, PASSES, 6000, now, timedelta(days=29), seed=11)

    async def nowhere(dead: DeadLetter) -> None:
        raise AssertionError(f"unexpected dead letter: {dead}")

    async def no_changelog() -> None:
        pass

    windows = UsageWindows(InMemoryWindowStore(), WindowPolicy(resident=timedelta(minutes=1)))
    sink = UsageSink(
        ActivityLogWriter(clickhouse),
        RollupStore(clickhouse),
        windows,
        nowhere,
        no_changelog,
        EventValidator(),
        SinkPolicy(evict_every_seconds=0),  # evict after every batch: late events reload
    )
    records = to_records(workload.sent, per_message=40)
    return {
        "project": project,
        "workload": workload,
        "records": records,
        "sink": sink,
        "now": now,
        "query": UsageQuery(clickhouse),
    }


async def test_counts_are_exact_over_every_range_and_zone(loaded: dict[str, Any]) -> None:
    sink, records = loaded["sink"], loaded["records"]
    batches = [records[i : i + 25] for i in range(0, len(records), 25)]
    for index, batch in enumerate(batches):
        await sink.process(batch)
        if index % 3 == 1:
            await sink.process(batch)  # redelivered after a "crash"
    await sink.process(batches[0] + batches[-1])  # and much later, again

    scope = ProjectScope(loaded["project"])
    unique = loaded["workload"].unique
    for pass_id in PASSES:
        mine = [e for e in unique if e["pass_id"] == pass_id]
        for rng in UsageRange:
            for zone in ("UTC", "America/New_York", "Asia/Kolkata"):
                report = loaded["query"].usage(scope, pass_id, rng, ZoneInfo(zone), loaded["now"])
                for bucket in report.buckets:
                    want = expected_counts(mine, bucket.bucket.start, bucket.bucket.end)
                    got = bucket.usage
                    assert (got.total_requests, got.success_count, got.error_count) == (
                        want["total_requests"],
                        want["success_count"],
                        want["error_count"],
                    ), (pass_id, rng, zone, bucket.bucket)
                assert_matches_log(report.total, expected_counts(mine, report.start, report.end))


def test_the_pass_list_and_overview_agree_with_the_log(loaded: dict[str, Any]) -> None:
    scope = ProjectScope(loaded["project"])
    query: UsageQuery = loaded["query"]
    unique = loaded["workload"].unique
    summaries = {s.pass_id: s for s in query.passes(scope, loaded["now"])}
    assert set(summaries) == set(PASSES)
    for pass_id in PASSES:
        mine = [e for e in unique if e["pass_id"] == pass_id]
        day = expected_counts(
            mine, loaded["now"] - timedelta(hours=24), loaded["now"] + timedelta(1)
        )
        overview = query.overview(scope, pass_id)
        lifetime = expected_counts(
            mine, datetime(2000, 1, 1, tzinfo=UTC), loaded["now"] + timedelta(1)
        )
        assert overview.total_requests == lifetime["total_requests"]
        assert overview.success_count == lifetime["success_count"]
        # windows are minute-aligned: the 24 h sum may take in up to one more minute
        assert summaries[pass_id].total_requests_24h >= day["total_requests"]
        assert overview.last_used_at == max(datetime.fromisoformat(e["started_at"]) for e in mine)
    assert query.passes(ProjectScope("nobody"), loaded["now"]) == []
