"""EventPublisher and GatewayProducer against the real broker."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from sentinel_usage.cli.tansu import TansuBroker, free_port
from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.wire import decode_message, pack_envelopes
from sentinel_usage.ingest.producer import EventPublisher, GatewayProducer
from tests.factories import raw_event

VALIDATOR = EventValidator()


async def read_all(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, dict]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    out: list[tuple[bytes, dict]] = []
    try:
        async with asyncio.timeout(30):
            while len(out) < expected:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    for m in messages:
                        out += [(m.key, e) for e in decode_message(m.value).events]
    finally:
        await consumer.stop()
    return out


async def test_publisher_returns_after_the_broker_acknowledged_envelopes_keyed_by_pass(
    kafka_bootstrap: str,
) -> None:
    topic = f"events-{uuid.uuid4().hex[:8]}"
    events = [VALIDATOR.validate(raw_event(pass_id=f"SP-{i % 4}")) for i in range(1000)]
    publisher = EventPublisher(kafka_bootstrap, topic=topic)
    await publisher.start()
    try:
        assert await publisher.publish(events) == 1000
    finally:
        await publisher.stop()
    received = await read_all(kafka_bootstrap, topic, 1000)
    assert {e["event_id"] for _, e in received} == {str(e.event_id) for e in events}
    assert all(key.decode() == e["pass_id"] for key, e in received)


async def test_gateway_producer_never_blocks_drops_when_full_and_flushes_on_close(
    kafka_bootstrap: str,
) -> None:
    topic = f"events-{uuid.uuid4().hex[:8]}"
    producer = GatewayProducer(kafka_bootstrap, topic=topic, buffer_size=500, linger_seconds=0.01)
    await producer.start()
    events = [VALIDATOR.validate(raw_event()) for _ in range(800)]
    # No await between records: the sender cannot drain, so the buffer fills.
    accepted = [producer.record(e) for e in events]
    assert accepted.count(True) == 500
    assert producer.dropped == 300
    await producer.close()
    assert not producer.record(events[0])  # closed: dropped, counted, no exception
    received = await read_all(kafka_bootstrap, topic, 500)
    assert {e["event_id"] for _, e in received} == {
        str(e.event_id) for e, ok in zip(events, accepted, strict=True) if ok
    }


async def test_envelopes_of_many_passes_land_in_the_partition_of_each_of_their_passes(
    kafka_bootstrap: str,
) -> None:
    topic = f"events-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    finally:
        await admin.close()
    passes = [f"SP-{i}" for i in range(12)]
    objects = [(p, raw_event(pass_id=p)) for p in passes * 5]
    publisher = EventPublisher(kafka_bootstrap, topic=topic)
    await publisher.start()
    try:
        envelopes = list(pack_envelopes(objects, await publisher.partitioner()))
        assert len(envelopes) <= 4
        assert await publisher.publish_envelopes(envelopes) == 60
    finally:
        await publisher.stop()
    # Where Kafka's own partitioner puts a message keyed by each pass:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        home = {p: (await producer.send_and_wait(topic, b"{}", key=p.encode())).partition
                for p in passes}  # fmt: skip
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    seen: list[tuple[int, str]] = []
    try:
        async with asyncio.timeout(30):
            while len(seen) < 60:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    for m in messages:
                        if m.value != b"{}":
                            seen += [
                                (m.partition, e["pass_id"]) for e in decode_message(m.value).events
                            ]
    finally:
        await consumer.stop()
    assert sorted(p for _, p in seen) == sorted(passes * 5)
    assert all(partition == home[p] for partition, p in seen)


async def test_a_gateway_producer_whose_kafka_is_away_keeps_recording_and_sends_once_back(
    tmp_path: Path,
) -> None:
    """The gateway serves calls while its broker is down: record() never fails, and the
    events buffered meanwhile arrive once a broker listens."""
    port = free_port()
    topic = f"events-{uuid.uuid4().hex[:8]}"
    producer = GatewayProducer(f"127.0.0.1:{port}", topic=topic, linger_seconds=0.01)
    await producer.start()  # returns at once, nothing listens yet
    events = [VALIDATOR.validate(raw_event()) for _ in range(300)]
    assert all(producer.record(e) for e in events[:200])
    await asyncio.sleep(1.5)  # a connection attempt or two fail meanwhile
    with TansuBroker(port=port) as broker:
        assert all(producer.record(e) for e in events[200:])
        received = await read_all(broker.bootstrap_servers, topic, 300)
        await producer.close()
    assert {e["event_id"] for _, e in received} == {str(e.event_id) for e in events}
