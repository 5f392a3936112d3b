"""ChangelogBatches: the tables' changelog records, sent in batches to the real broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from sentinel_usage.cli.tansu import TansuBroker
from sentinel_usage.stream.table_store import ChangelogBatches


async def read_partition(bootstrap: str, topic: str, partition: int, expected: int) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    place = TopicPartition(topic, partition)
    consumer.assign([place])
    await consumer.seek_to_beginning(place)
    out: list[tuple[bytes, bytes | None]] = []
    try:
        async with asyncio.timeout(30):
            while len(out) < expected:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    out += [(m.key, m.value) for m in messages]
    finally:
        await consumer.stop()
    return out


async def test_records_reach_their_partitions_in_order_with_tombstones(
    kafka_bootstrap: str,
) -> None:
    topic = f"changelog-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    changelog = ChangelogBatches(lambda: producer)
    # ~3 KB values: a partition's records span many 16 KB batches
    sent: dict[int, list[tuple[bytes, bytes | None]]] = {0: [], 1: []}
    try:
        for i in range(300):
            partition, key = i % 2, f"w-{i % 40}".encode()
            value = None if i % 7 == 0 else f"{i}:".encode() * 600
            changelog.add(topic, partition, key, value)
            sent[partition].append((key, value))
        assert changelog.pending == 300
        await changelog.flush()
        assert changelog.pending == 0
        await changelog.flush()  # nothing pending: nothing sent
    finally:
        await producer.stop()
    for partition, records in sent.items():
        assert await read_partition(kafka_bootstrap, topic, partition, 150) == records


async def test_records_the_broker_did_not_acknowledge_stay_pending_first() -> None:
    with TansuBroker() as broker:
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap_servers, request_timeout_ms=1000
        )
        await producer.start()
        changelog = ChangelogBatches(lambda: producer)
        changelog.add("changelog-gone", 0, b"a", b"1")
        changelog.add("changelog-gone", 0, b"b", None)
        broker.stop()
        try:
            with pytest.raises(KafkaError):
                await changelog.flush()
            assert changelog.pending == 2
        finally:
            await producer.stop()
