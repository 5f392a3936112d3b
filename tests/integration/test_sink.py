"""UsageSink with the real ClickHouse engine and the real broker's dead-letter topic."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from sentinel_usage.analytics.activity import ActivityLogQuery
from sentinel_usage.analytics.rollups import RollupStore
from sentinel_usage.analytics.scope import ProjectScope
from sentinel_usage.analytics.writer import ActivityLogWriter
from sentinel_usage.core.errors import DependencyUnavailableError
from sentinel_usage.core.events import EventValidator, UsageEvent
from sentinel_usage.core.wire import encode_envelopes
from sentinel_usage.ingest.admin import ensure_topics
from sentinel_usage.stream.decode import DeadLetter, SourceRecord
from sentinel_usage.stream.sink import RetryPolicy, SinkPolicy, UsageSink
from sentinel_usage.stream.windows import UsageWindows
from tests.factories import raw_event
from tests.stream_support import InMemoryWindowStore

VALIDATOR = EventValidator()


class UnavailableTwice(ActivityLogWriter):
    """The real writer, after ClickHouse was unreachable for two attempts."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.failures = 0

    def write(self, events: Any) -> int:
        if self.failures < 2:
            self.failures += 1
            raise DependencyUnavailableError("connection refused")
        return super().write(events)


async def test_valid_rows_are_written_and_bad_ones_dead_lettered_with_their_source(
    clickhouse: Any, kafka_bootstrap: str
) -> None:
    dlq_topic = f"dlq-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()

    async def send_dead_letter(dead: DeadLetter) -> None:
        await producer.send_and_wait(dlq_topic, dead.to_json(), key=dead.source.key)

    pass_id = f"SP-{uuid.uuid4().hex[:8]}"
    events: list[UsageEvent] = [VALIDATOR.validate(raw_event(pass_id=pass_id)) for _ in range(20)]
    (envelope,) = encode_envelopes(events)
    records = [
        SourceRecord("sentinel.usage.events", 3, 100, pass_id.encode(), envelope.payload),
        SourceRecord("sentinel.usage.events", 3, 101, pass_id.encode(), b"garbage"),
        SourceRecord(
            "sentinel.usage.events",
            3,
            102,
            pass_id.encode(),
            orjson.dumps(raw_event(pass_id=pass_id, client_ip="nope")),
        ),
    ]
    writer = UnavailableTwice(clickhouse)

    async def no_changelog() -> None:
        pass

    sink = UsageSink(
        writer,
        RollupStore(clickhouse),
        UsageWindows(InMemoryWindowStore()),
        send_dead_letter,
        no_changelog,
        VALIDATOR,
        SinkPolicy(retry=RetryPolicy(first_delay=0.01)),
    )
    try:
        written = await sink.process(records)
    finally:
        await producer.stop()

    assert written == 20
    assert writer.failures == 2  # retried, never dead-lettered for an outage
    page = ActivityLogQuery(clickhouse).page(ProjectScope("proj-a"), pass_id, 1, 100)
    assert {row["event_id"] for row in page.items} == {e.event_id for e in events}

    consumer = AIOKafkaConsumer(
        dlq_topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        letters = []
        async with asyncio.timeout(20):
            while len(letters) < 2:
                batch = await consumer.getmany(timeout_ms=500)
                letters += [orjson.loads(m.value) for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()
    assert [(d["source_partition"], d["source_offset"]) for d in letters] == [(3, 101), (3, 102)]
    assert letters[0]["reason"].startswith("not valid JSON")
    assert letters[0]["payload"] == "garbage"
    assert letters[1]["errors"] == [
        {"field": "client_ip", "message": "is not a valid IPv4 or IPv6 address"}
    ]


async def test_a_write_clickhouse_refuses_is_retried_until_it_clears_and_nothing_is_lost(
    clickhouse: Any,
) -> None:
    """Issue 11: chDB refusing writes (it said DatabaseError, code 1001, for a read-only
    data directory) crashed the agent and lost its batch. Here the engine refuses for
    real: the table is renamed away while the sink writes, then put back."""
    from sentinel_usage.core.health import HealthBoard
    from sentinel_usage.stream.metrics import SINK_RETRIES

    pass_id = f"SP-{uuid.uuid4().hex[:8]}"
    events = [VALIDATOR.validate(raw_event(pass_id=pass_id)) for _ in range(50)]
    (envelope,) = encode_envelopes(events)
    records = [SourceRecord("sentinel.usage.events", 0, 7, pass_id.encode(), envelope.payload)]
    health = HealthBoard()

    async def no_changelog() -> None:
        pass

    async def no_dead_letters(dead: DeadLetter) -> None:
        raise AssertionError(f"nothing here is invalid: {dead.reason}")

    sink = UsageSink(
        ActivityLogWriter(clickhouse),
        RollupStore(clickhouse),
        UsageWindows(InMemoryWindowStore()),
        no_dead_letters,
        no_changelog,
        VALIDATOR,
        SinkPolicy(retry=RetryPolicy(first_delay=0.05, max_delay=0.2)),
        health=health,
    )
    retries_before = SINK_RETRIES._value.get()
    clickhouse.command("RENAME TABLE activity_log TO activity_log_away")
    try:
        writing = asyncio.create_task(sink.process_until_done(records))
        async with asyncio.timeout(20):
            while "sink" not in health.problems():  # noqa: ASYNC110 - polled by design
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert not writing.done()  # waiting, not skipping
        assert "activity_log" in health.problems()["sink"]
    finally:
        clickhouse.command("RENAME TABLE activity_log_away TO activity_log")
    async with asyncio.timeout(20):
        assert await writing == 50
    assert SINK_RETRIES._value.get() > retries_before
    assert health.problems() == {}
    page = ActivityLogQuery(clickhouse).page(ProjectScope("proj-a"), pass_id, 1, 100)
    assert page.total == 50


async def test_an_event_id_is_one_event_per_project_whatever_its_other_fields(
    clickhouse: Any,
) -> None:
    """Issue 11: an event_id sent again with another started_at counted twice. Within a
    project the first version accepted wins (another time, another pass: a duplicate);
    in another project the same id is another event (keys are scoped by tenant)."""
    pass_id = f"SP-{uuid.uuid4().hex[:8]}"
    first = raw_event(pass_id=pass_id)
    later = raw_event()["started_at"][:-6] + "+01:00"  # an hour earlier, as a retry may say
    versions = [
        first,
        {**first, "started_at": later},
        {**first, "pass_id": pass_id + "-other", "status_code": 500},
        {**first, "project_id": "proj-b"},
    ]

    async def nothing(*args: Any) -> None:
        pass

    sink = UsageSink(
        ActivityLogWriter(clickhouse),
        RollupStore(clickhouse),
        UsageWindows(InMemoryWindowStore()),
        nothing,
        nothing,
        VALIDATOR,
    )
    for offset, event in enumerate(versions):  # each in a batch of its own, in order
        record = SourceRecord("events", 0, offset, pass_id.encode(), orjson.dumps(event))
        await sink.process([record])
    await sink.process([SourceRecord("events", 0, 9, None, orjson.dumps(versions[1]))])

    query = ActivityLogQuery(clickhouse)
    page = query.page(ProjectScope("proj-a"), pass_id, 1, 100)
    assert page.total == 1
    assert page.items[0]["started_at"] == VALIDATOR.validate(first).started_at
    assert query.page(ProjectScope("proj-a"), pass_id + "-other", 1, 100).total == 0
    assert query.page(ProjectScope("proj-b"), pass_id, 1, 100).total == 1
    ((rolled,),) = clickhouse.unscoped_rows(
        "SELECT sum(total_requests) FROM usage_rollups FINAL "
        "WHERE project_id = 'proj-a' AND pass_id LIKE {p:String}",
        {"p": pass_id + "%"},
        what="test",
    )
    assert rolled == 1
