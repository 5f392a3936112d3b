"""Nothing a producer writes and nothing periodic stops the embedded stack
(issue 11, reproductions 4 and 5), on one `up` with short windows and a 1 s alert
evaluation: the settings under which a None high-water mark in the lag metric
took `up` down in 3 runs of 3."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from sentinel_usage.core import topics
from tests.e2e.stack import Stack, committed_and_end_offsets, start_stack
from tests.factories import raw_event


@pytest.fixture(scope="module")
def fast_timers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(
        tmp_path_factory.mktemp("timers") / "var",
        SENTINEL_WINDOW_SECONDS="5",
        SENTINEL_ALERT_WINDOW_SECONDS="20",
        SENTINEL_ALERT_EVERY_SECONDS="1",
        SENTINEL_LAG_EVERY_SECONDS="0.2",
    )
    yield stack
    stack.stop()


def test_timers_never_take_the_process_down(fast_timers: Stack) -> None:
    project = f"proj-{uuid.uuid4().hex[:6]}"
    passes = [f"SP-T{n}" for n in range(4)]
    with fast_timers.client([project]) as http:
        response = http.post(
            "/v1/events", json=[raw_event(project_id=project, pass_id=p) for p in passes * 25]
        )
        assert response.status_code == 202
        deadline = time.monotonic() + 30  # half the minute in which it crashed 3 times of 3
        while time.monotonic() < deadline:
            assert fast_timers.process.poll() is None, fast_timers.log_path.read_text()[-3000:]
            assert http.get("/readyz").status_code == 200
            time.sleep(1)
    assert fast_timers.metric("sentinel_periodic_failures_total") == 0
    assert "periodic_task_failed" not in fast_timers.log_path.read_text()


def deep_metadata_record(project: str, pass_id: str, levels: int) -> bytes:
    """An event whose metadata nests `levels` deep, as a producer in another language
    writes it (orjson cannot build it beyond 254 levels)."""
    text = orjson.dumps(raw_event(project_id=project, pass_id=pass_id, metadata={"m": 1}))
    return text.replace(
        b'"metadata":{"m":1}', b'"metadata":' + b'{"a":' * levels + b"1" + b"}" * levels
    )


def test_a_poison_record_is_dead_lettered_and_the_records_after_it_flow_on(
    fast_timers: Stack,
) -> None:
    project = f"proj-{uuid.uuid4().hex[:6]}"
    pass_id = "SP-POISON"
    after = raw_event(project_id=project, pass_id=pass_id)
    dead_before = fast_timers.metric('sentinel_dlq_records_total{reason="invalid event"}')

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=fast_timers.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            key = pass_id.encode()  # the same partition, in this order
            await producer.send_and_wait(
                topics.EVENTS, deep_metadata_record(project, pass_id, 300), key=key
            )
            await producer.send_and_wait(topics.EVENTS, b"\xff\xfe not even JSON", key=key)
            await producer.send_and_wait(topics.EVENTS, orjson.dumps(after), key=key)
        finally:
            await producer.stop()

    asyncio.run(produce())
    with fast_timers.client([project]) as http:
        deadline = time.monotonic() + 30
        while True:
            page = http.get(f"/v1/projects/{project}/passes/{pass_id}/activity")
            if page.status_code == 200 and page.json()["total"] == 1:
                break
            assert time.monotonic() < deadline, "the record after the poison never arrived"
            time.sleep(0.2)
    assert page.json()["items"][0]["event_id"] == after["event_id"]
    assert fast_timers.metric('sentinel_dlq_records_total{reason="invalid event"}') > dead_before
    committed, ends = asyncio.run(committed_and_end_offsets(fast_timers.kafka_bootstrap))
    deadline = time.monotonic() + 10
    while any(committed.get(p, 0) < end for p, end in ends.items()):
        assert time.monotonic() < deadline, f"a partition is stuck: {committed} vs {ends}"
        time.sleep(0.3)
        committed, ends = asyncio.run(committed_and_end_offsets(fast_timers.kafka_bootstrap))
    assert httpx.get(f"{fast_timers.base_url}/readyz").status_code == 200


def test_metrics_have_a_loopback_listener_of_their_own(fast_timers: Stack) -> None:
    assert httpx.get(f"{fast_timers.base_url}/metrics").status_code == 404
    assert fast_timers.metrics_url.startswith("http://127.0.0.1:")
    assert "sentinel_sink_events_written_total" in httpx.get(fast_timers.metrics_url).text
