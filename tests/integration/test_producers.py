"""EventPublisher and GatewayProducer against the real broker."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer

from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.wire import decode_message
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
