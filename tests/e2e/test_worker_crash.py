"""A worker killed after its ClickHouse insert and before its offset commit.

The first stack commits offsets only once an hour, so the kill (SIGKILL, no
shutdown hooks) is sure to fall between the insert and the commit; the
restarted stack must receive the same records again, and every event must
still appear exactly once.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from sentinel_usage.cli.tansu import TansuBroker
from sentinel_usage.core import topics
from sentinel_usage.stream.app import APP_ID
from tests.e2e.stack import start_stack
from tests.factories import raw_event

PROJECT = "proj-crash"


@pytest.fixture(scope="module")
def own_broker() -> Iterator[str]:
    """A broker of this module's own, so that no other stack shares its consumer group."""
    with TansuBroker() as broker:
        yield broker.bootstrap_servers


async def lag(bootstrap: str) -> tuple[dict[int, int], dict[int, int]]:
    """(committed offsets, end offsets) of the events topic for the worker's group."""
    # aiokafka's admin OffsetFetch cannot decode Tansu's answer; a consumer of the
    # group that never subscribes reads the committed offsets without joining.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=APP_ID, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topics.EVENTS) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topics.EVENTS) or set()
        tps = [TopicPartition(topics.EVENTS, p) for p in partitions]
        ends = {tp.partition: off for tp, off in (await consumer.end_offsets(tps)).items()}
        done = {}
        for tp in tps:
            offset = await consumer.committed(tp)
            if offset is not None and offset >= 0:
                done[tp.partition] = offset
        return done, ends
    finally:
        await consumer.stop()


def test_events_appear_exactly_once_after_a_kill_between_insert_and_commit(
    own_broker: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "var"
    pass_id = f"SP-{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC)
    events = [
        raw_event(
            project_id=PROJECT,
            pass_id=pass_id,
            started_at=(now - timedelta(milliseconds=i)).isoformat(),
        )
        for i in range(1000)
    ]
    first = start_stack(
        data_dir, KAFKA_BOOTSTRAP_SERVERS=own_broker, SENTINEL_COMMIT_INTERVAL_SECONDS="3600"
    )
    try:
        with first.client([PROJECT]) as http:
            assert http.post("/v1/events", json=events).json()["accepted"] == 1000
            deadline = time.monotonic() + 10
            while True:
                page = http.get(f"/v1/projects/{PROJECT}/passes/{pass_id}/activity")
                if page.status_code == 200 and page.json()["total"] == 1000:
                    break
                assert time.monotonic() < deadline, page.text
                time.sleep(0.05)
        committed, ends = asyncio.run(lag(own_broker))
        assert sum(ends.values()) > 0
        assert all(committed.get(p, 0) < end for p, end in ends.items() if end > 0), (
            "offsets were committed before the kill; the test would prove nothing"
        )
    finally:
        first.stop(signal.SIGKILL)

    second = start_stack(data_dir, KAFKA_BOOTSTRAP_SERVERS=own_broker)
    try:
        deadline = time.monotonic() + 30
        while True:
            committed, ends = asyncio.run(lag(own_broker))
            if all(committed.get(p, 0) >= end for p, end in ends.items()):
                break
            assert time.monotonic() < deadline, f"not caught up: {committed} vs {ends}"
            time.sleep(0.5)
        # the records came again and were recognised as already written
        assert second.metric("sentinel_sink_duplicates_dropped_total") >= 1000
        with second.client([PROJECT]) as http:
            ids: list[str] = []
            for page in range(1, 11):
                body = http.get(
                    f"/v1/projects/{PROJECT}/passes/{pass_id}/activity",
                    params={"page": page, "per_page": 100},
                ).json()
                assert body["total"] == 1000
                ids += [row["event_id"] for row in body["items"]]
        assert sorted(ids) == sorted(e["event_id"] for e in events)
    finally:
        second.stop()
