"""Producing usage events to Kafka.

`EventPublisher` is for the HTTP ingest: it returns only once the broker has
acknowledged every message (acks=all). `GatewayProducer` is for gateways: the
request path hands it an event and moves on; a background task batches, packs
and sends; when its bounded buffer is full it drops the event and counts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from functools import lru_cache
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


@lru_cache(maxsize=65_536)
def _key_hash(pass_id: str) -> int:
    """Kafka's murmur2 of a key, positive. aiokafka's is pure Python: ~2.4 µs a key,
    a quarter of a millisecond for a request of 100 passes, before this cache."""
    return int(murmur2(pass_id.encode())) & 0x7FFFFFFF


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
            return int(partitions[_key_hash(pass_id) % len(partitions)])

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


class Recordable(Protocol):
    """What GatewayProducer buffers: an event, or a record that becomes one when its batch
    is sent (the gateway's calls: their event is built off the request path)."""

    def to_wire(self) -> dict[str, Any]:
        """The event's JSON-ready form (UsageEvent's fields); called once, by the sender."""
        ...


WireEvent = tuple[str, dict[str, Any]]  # (pass id, JSON-ready event)


class GatewayProducer:
    """A non-blocking, bounded, batching producer for the gateway's request path.

    `record()` never blocks, never awaits and never raises for a full buffer: the record
    is dropped and `sentinel_gateway_events_dropped_total` counts it. A background task
    lingers, turns what came into events (`to_wire`), packs and sends them. `close()`
    flushes what is buffered before stopping.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str = topics.EVENTS,
        buffer_size: int = 100_000,
        batch_size: int = 2_000,
        # A busy gateway pays per batch more than per event (the sender's wake-ups, a
        # produce request and its answer): at 3,000 calls/s, 0.2 s instead of 0.05 took
        # the served gateway's ratio from 0.81 to 0.84 (bench/gateway_bench.py). Events
        # reach Kafka at most this much later; Kong's log queues wait up to a second.
        linger_seconds: float = 0.2,
        # zstd (through cramjam): 0.5 µs an event against gzip's 4 (aiokafka compresses
        # gzip at level 9), and a smaller batch; Kafka ≥ 2.1 and Tansu take it.
        compression_type: str | None = "zstd",
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._compression_type = compression_type
        self._producer: AIOKafkaProducer | None = None
        self._topic = topic
        # A list, not an asyncio.Queue: the request path only appends (put_nowait cost
        # a busy gateway a microsecond a call, and a wake-up of the sender per event).
        self._buffer: list[Recordable] = []
        # Events built and sent once that the broker did not take: sent first, with the
        # event ids they already had.
        self._retry: list[WireEvent] = []
        self._capacity = buffer_size
        self._batch_size = batch_size
        self._linger = linger_seconds
        self._arrived = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._closing = False
        self.dropped = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer) + len(self._retry)

    async def start(self) -> None:
        """Returns at once: the broker is connected in the background (a gateway serves
        calls while its Kafka is away; what it records waits in the buffer)."""
        self._sender = asyncio.create_task(self._run(), name="gateway-producer")

    async def _connect(self) -> AIOKafkaProducer:
        while True:
            # linger_ms=0: the batch is made here, aiokafka need not wait for more.
            producer = kafka_producer(
                self._bootstrap_servers, compression_type=self._compression_type, linger_ms=0
            )
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                log.warning("gateway_producer_unconnected", error=repr(exc))
                await asyncio.sleep(RECONNECT_SECONDS)
                continue
            return producer

    def record(self, item: Recordable) -> bool:
        """Buffer one event (or call record); False when it was dropped (buffer full, or
        closing)."""
        buffer = self._buffer
        if self._closing or len(buffer) + len(self._retry) >= self._capacity:
            self._drop()
            return False
        buffer.append(item)
        if len(buffer) == 1:
            self._arrived.set()
        return True

    def _drop(self, count: int = 1) -> None:
        self.dropped += count
        GATEWAY_DROPPED.inc(count)

    async def close(self, flush_seconds: float = 10.0) -> None:
        """Flush buffered events (for up to `flush_seconds`), then stop."""
        self._closing = True
        self._arrived.set()
        if self._sender is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._sender), flush_seconds)
            except TimeoutError:
                log.warning("gateway_producer_flush_timeout", left=self.buffered)
            except Exception as exc:  # noqa: BLE001 - a stop must go on: logged, not raised
                log.error("gateway_producer_sender_failed", error=repr(exc), left=self.buffered)
            await cancel_and_wait(self._sender)
        if self._producer is not None:
            await self._producer.stop()

    async def _run(self) -> None:
        self._producer = await self._connect()
        while not (self._closing and not self.buffered):
            await self._arrived.wait()
            # Linger once, then take what came (Kafka's linger.ms). A full batch waiting
            # already goes at once, and so does everything once closing.
            if self.buffered < self._batch_size and not self._closing:
                await asyncio.sleep(self._linger)
            await self._send(self._take())
            if self._retry:
                await asyncio.sleep(RECONNECT_SECONDS)  # the broker refused: not a loop

    def _take(self) -> list[WireEvent]:
        """Up to a batch of events, the ones to send again first."""
        batch, self._retry = self._retry[: self._batch_size], self._retry[self._batch_size :]
        room = self._batch_size - len(batch)
        taken, self._buffer = self._buffer[:room], self._buffer[room:]
        if not self.buffered:
            self._arrived.clear()
        for item in taken:
            try:
                wire = item.to_wire()
            except Exception as exc:  # noqa: BLE001 - one bad record must not stop the sender
                log.error("gateway_event_unbuildable", error=repr(exc))
                GATEWAY_SEND_FAILED.inc()
                continue
            batch.append((wire["pass_id"], wire))
        return batch

    def _again(self, batch: list[WireEvent]) -> None:
        """A batch the broker did not take is kept (what fits), and sent once Kafka is
        back. Envelopes of it that did land come again, and the pipeline's deduplication
        by event_id counts them once."""
        if self._closing:
            GATEWAY_SEND_FAILED.inc(len(batch))
            return
        kept = batch[: max(0, self._capacity - self.buffered)]
        self._retry.extend(kept)
        if len(kept) < len(batch):
            self._drop(len(batch) - len(kept))
        self._arrived.set()

    async def _send(self, batch: list[WireEvent]) -> None:
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
