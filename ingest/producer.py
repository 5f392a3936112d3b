"""Producing usage events to Kafka.

`EventPublisher` is for the HTTP ingest: it returns only once the broker has
acknowledged every message (acks=all). `GatewayProducer` is for gateways: the
request path hands it an event and moves on; a background task batches, packs
and sends; when its bounded buffer is full it drops the event and counts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from prometheus_client import Counter

from sentinel_usage.core import topics
from sentinel_usage.core.events import UsageEvent
from sentinel_usage.core.periodic import cancel_and_wait
from sentinel_usage.core.wire import Envelope, encode_envelopes, pack_envelopes

log = structlog.get_logger(__name__)

RECONNECT_SECONDS: Final = 1.0

GATEWAY_DROPPED = Counter(
    "sentinel_gateway_events_dropped",
    "Events a gateway producer dropped because its buffer was full.",
)
GATEWAY_SENT = Counter("sentinel_gateway_events_sent", "Events a gateway producer sent to Kafka.")
GATEWAY_SEND_FAILED = Counter(
    "sentinel_gateway_events_send_failed", "Events a gateway producer could not deliver."
)


def kafka_producer(bootstrap_servers: str, **options: Any) -> AIOKafkaProducer:
    defaults: dict[str, Any] = {
        "acks": "all",
        "linger_ms": 5,
        "max_request_size": 1024 * 1024,
        "request_timeout_ms": 15_000,
    }
    defaults.update(options)
    return AIOKafkaProducer(bootstrap_servers=bootstrap_servers, **defaults)


class Publisher(Protocol):
    """What the HTTP ingest publishes through: EventPublisher, or the embedded mode's
    DurablePublisher (ingest/durable.py)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def publish_envelopes(self, envelopes: Sequence[Envelope]) -> int: ...
    async def partitioner(self) -> Callable[[str], int]: ...
    async def ping(self) -> None: ...


class EventPublisher:
    """Publishes validated events and waits for the broker's acknowledgement."""

    def __init__(self, bootstrap_servers: str, topic: str = topics.EVENTS, **options: Any) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._options = options
        self._topic = topic
        self._started: AIOKafkaProducer | None = None

    @property
    def _producer(self) -> AIOKafkaProducer:
        if self._started is None:
            raise RuntimeError("EventPublisher.start() was not awaited")
        return self._started

    async def start(self) -> None:
        # aiokafka binds a producer to the running loop: create it here, not in __init__.
        producer = kafka_producer(self._bootstrap_servers, **self._options)
        await producer.start()
        self._started = producer

    async def stop(self) -> None:
        if self._started is not None:
            await self._started.stop()
            self._started = None

    async def publish(self, events: Sequence[UsageEvent]) -> int:
        """Send `events` packed in envelopes keyed by pass; return once all are acked.

        Raises aiokafka's KafkaError when the broker does not acknowledge; some
        envelopes may then have been written, which is safe because downstream
        deduplicates by event_id.
        """
        return await self.publish_envelopes(list(encode_envelopes(events)))

    async def partitioner(self) -> Callable[[str], int]:
        """The partition a message keyed by a pass id goes to: Kafka's default
        partitioner (murmur2 of the key), over the topic's partitions now."""
        partitions = sorted(await self._producer.partitions_for(self._topic))

        def partition_of(pass_id: str) -> int:
            return int(partitions[(murmur2(pass_id.encode()) & 0x7FFFFFFF) % len(partitions)])

        return partition_of

    async def publish_envelopes(self, envelopes: Sequence[Envelope]) -> int:
        """Send envelopes (keyed by pass); return the events sent once all are acked."""
        await self.publish_positions(envelopes)
        return sum(env.event_count for env in envelopes)

    async def publish_positions(self, envelopes: Sequence[Envelope]) -> list[tuple[int, int]]:
        """Send envelopes (keyed by pass); once all are acked, return the (partition,
        offset) the broker gave each."""
        deliveries = [
            await self._producer.send(self._topic, value=env.payload, key=env.pass_id.encode())
            for env in envelopes
        ]
        return [(meta.partition, meta.offset) for meta in await asyncio.gather(*deliveries)]

    async def ping(self) -> None:
        """Raise if the broker cannot be reached (metadata round trip)."""
        await self._producer.client.fetch_all_metadata()


class KeyedRecordPublisher:
    """Sends (key, value) records to one topic and returns once the broker acknowledged
    them all; a None value is a tombstone. Order holds per key: records of one call go
    in the partition's batches in order, and the next call waits for these acks.
    (An idempotent producer would be the textbook answer: Tansu 0.6 answers its
    InitProducerId with error -1, so aiokafka cannot start one there.)"""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = kafka_producer(self._bootstrap_servers)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def __call__(self, records: Sequence[tuple[str, bytes | None]]) -> None:
        assert self._producer is not None, "start() first"
        sent = [
            await self._producer.send(self._topic, value=value, key=key.encode())
            for key, value in records
        ]
        await asyncio.gather(*sent)


class GatewayProducer:
    """A non-blocking, bounded, batching producer for the gateway's request path.

    `record()` never blocks and never raises for a full buffer: the event is
    dropped and `sentinel_gateway_events_dropped_total` counts it. `close()`
    flushes what is buffered before stopping.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str = topics.EVENTS,
        buffer_size: int = 100_000,
        batch_size: int = 2_000,
        linger_seconds: float = 0.05,
        # zstd (through cramjam): 0.5 µs an event against gzip's 4 (aiokafka compresses
        # gzip at level 9), and a smaller batch; Kafka ≥ 2.1 and Tansu take it.
        compression_type: str | None = "zstd",
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._compression_type = compression_type
        self._producer: AIOKafkaProducer | None = None
        self._topic = topic
        # (pass id, JSON-ready event): what an envelope carries, built once by the caller.
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize=buffer_size)
        self._batch_size = batch_size
        self._linger = linger_seconds
        self._sender: asyncio.Task[None] | None = None
        self._closing = False
        self.dropped = 0

    async def start(self) -> None:
        """Returns at once: the broker is connected in the background (a gateway serves
        calls while its Kafka is away; what it records waits in the buffer)."""
        self._sender = asyncio.create_task(self._run(), name="gateway-producer")

    async def _connect(self) -> AIOKafkaProducer:
        while True:
            producer = kafka_producer(
                self._bootstrap_servers, compression_type=self._compression_type
            )
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                log.warning("gateway_producer_unconnected", error=repr(exc))
                await asyncio.sleep(RECONNECT_SECONDS)
                continue
            return producer

    def record(self, event: UsageEvent) -> bool:
        """Buffer one event; False when it was dropped (buffer full or closing)."""
        return self.record_wire(event.pass_id, event.to_wire())

    def record_wire(self, pass_id: str, wire: dict[str, Any]) -> bool:
        """Buffer one event already in its wire form (the gateway's hot path builds it
        directly: no model on the request path); the worker validates it like any
        third-party event."""
        if self._closing:
            self._drop()
            return False
        try:
            self._queue.put_nowait((pass_id, wire))
        except asyncio.QueueFull:
            self._drop()
            return False
        return True

    def _drop(self) -> None:
        self.dropped += 1
        GATEWAY_DROPPED.inc()

    async def close(self, flush_seconds: float = 10.0) -> None:
        """Flush buffered events (for up to `flush_seconds`), then stop."""
        self._closing = True
        if self._sender is not None:
            try:
                await asyncio.wait_for(self._drain_then_stop_sender(), flush_seconds)
            except TimeoutError:
                log.warning("gateway_producer_flush_timeout", left=self._queue.qsize())
        if self._producer is not None:
            await self._producer.stop()

    async def _drain_then_stop_sender(self) -> None:
        await self._queue.join()
        await cancel_and_wait(self._sender)

    async def _run(self) -> None:
        self._producer = await self._connect()
        while True:
            batch = [await self._queue.get()]
            # Linger once, then take what came (Kafka's linger.ms): waiting for each event
            # in turn cost a task, a timer and a wake-up per event, most of a busy
            # gateway's cost of recording. A full batch waiting already goes at once.
            if self._queue.qsize() < self._batch_size - 1:
                await asyncio.sleep(self._linger)
            while len(batch) < self._batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            try:
                await self._send(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _again(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        """A batch the broker did not take goes back in the buffer (what fits): it is
        sent once Kafka is back. Envelopes of it that did land come again, and the
        pipeline's deduplication by event_id counts them once."""
        if self._closing:
            GATEWAY_SEND_FAILED.inc(len(batch))
            return
        for event in batch:
            try:
                self._queue.put_nowait(event)
            except asyncio.QueueFull:
                self._drop()

    async def _send(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        assert self._producer is not None
        requeued = False

        def again_once() -> None:  # one envelope failing puts the batch back, once
            nonlocal requeued
            if not requeued:
                requeued = True
                self._again(batch)

        try:
            for env in pack_envelopes(batch):
                # send() only appends to aiokafka's accumulator; the delivery is
                # observed by a callback, never awaited on the request path.
                delivery = await self._producer.send(
                    self._topic, value=env.payload, key=env.pass_id.encode()
                )
                delivery.add_done_callback(_count_delivery(env.event_count, again_once))
        except Exception as exc:  # noqa: BLE001 - a producer error must not kill the sender
            log.error("gateway_producer_send_failed", events=len(batch), error=repr(exc))
            again_once()
            await asyncio.sleep(RECONNECT_SECONDS)


def _count_delivery(
    events: int, on_failure: Callable[[], None]
) -> Callable[[asyncio.Future[Any]], None]:
    def done(delivery: asyncio.Future[Any]) -> None:
        if delivery.cancelled() or delivery.exception() is not None:
            GATEWAY_SEND_FAILED.inc(events)
            log.error("gateway_producer_delivery_failed", events=events)
            on_failure()
        else:
            GATEWAY_SENT.inc(events)

    return done
