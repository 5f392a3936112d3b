"""DurablePublisher: the embedded mode's HTTP-ingest publisher, which no stop loses.

An envelope is acknowledged (the ingest answers `202`) only once it is both in
the IngestJournal (fsync'd) and acknowledged by the broker; the two run at the
same time, so the journal adds an fsync's latency, not a second round trip. At
start the journal's segments are replayed into the (new, empty) embedded broker;
every `trim_every` seconds the segments the worker's consumer group has
committed past are deleted. With an external Kafka this class is not used: the
broker's own replication is the durability.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Gauge

from sentinel_usage.core import topics
from sentinel_usage.core.periodic import cancel_and_wait, periodic
from sentinel_usage.core.wire import Envelope
from sentinel_usage.ingest.journal import IngestJournal
from sentinel_usage.ingest.producer import EventPublisher

log = structlog.get_logger(__name__)

JOURNAL_SEGMENTS = Gauge(
    "sentinel_ingest_journal_segments", "Journal segments on disk (replayed at a restart)."
)
JOURNAL_BYTES = Gauge("sentinel_ingest_journal_bytes", "Bytes of journal segments on disk.")


class CommittedOffsets:
    """The consumer group's committed offsets of the events topic.

    A consumer of the group that never subscribes reads them without joining the
    group (aiokafka's admin OffsetFetch cannot decode Tansu's answer)."""

    def __init__(self, bootstrap_servers: str, group: str = topics.CONSUMER_GROUP) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._group = group
        self._consumer: AIOKafkaConsumer | None = None

    async def read(self) -> dict[int, int]:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap_servers,
                group_id=self._group,
                enable_auto_commit=False,
            )
            await consumer.start()
            self._consumer = consumer
        partitions = self._consumer.partitions_for_topic(topics.EVENTS)
        if not partitions:
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(topics.EVENTS) or set()
        committed = {}
        for partition in partitions:
            offset = await self._consumer.committed(TopicPartition(topics.EVENTS, partition))
            if offset is not None and offset >= 0:
                committed[partition] = offset
        return committed

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


async def replay_journal(journal: IngestJournal, bootstrap_servers: str) -> int:
    """Publish what the journal holds into the (new) broker before the worker starts,
    so that what was acknowledged comes first; return the events replayed."""
    publisher = EventPublisher(bootstrap_servers)
    await publisher.start()
    try:
        events = await journal.replay(publisher.publish_positions)
    finally:
        await publisher.stop()
    if events:
        log.info("journal_replayed", events=events)
    return events


@dataclass(eq=False)
class DurablePublisher:
    """EventPublisher's interface; every publish journaled as well as acknowledged."""

    publisher: EventPublisher
    journal: IngestJournal
    committed: CommittedOffsets
    trim_every: float = 2.0
    _trimmer: asyncio.Task[None] | None = field(default=None, init=False)

    async def start(self) -> None:
        await self.publisher.start()
        # `up` replays before the worker subscribes (replay_journal); this replays
        # only what is still unknown (another process's segments, say).
        await self.journal.replay(self.publisher.publish_positions)
        await self.journal.open()
        self._trimmer = asyncio.create_task(self._trim_forever(), name="journal-trim")

    async def stop(self) -> None:
        await cancel_and_wait(self._trimmer)
        await self.journal.close()
        await self.committed.close()
        await self.publisher.stop()

    async def publish_envelopes(self, envelopes: Sequence[Envelope]) -> int:
        """Return the events sent once every envelope is on disk and acknowledged.

        Raises JournalError or aiokafka's KafkaError: then nothing is acknowledged
        (what did reach the journal or the broker is deduplicated downstream)."""
        segment, positions = await asyncio.gather(
            self.journal.append(envelopes), self.publisher.publish_positions(envelopes)
        )
        self.journal.published(segment, positions)
        return sum(env.event_count for env in envelopes)

    async def partitioner(self) -> Callable[[str], int]:
        return await self.publisher.partitioner()

    async def ping(self) -> None:
        await self.publisher.ping()

    async def _trim_forever(self) -> None:
        trim = periodic("journal_trim", self._trim)
        while True:
            await asyncio.sleep(self.trim_every)
            await trim()

    async def _trim(self) -> None:
        deleted = await self.journal.trim(await self.committed.read())
        segments, size = self.journal.backlog()
        JOURNAL_SEGMENTS.set(segments)
        JOURNAL_BYTES.set(size)
        if deleted:
            log.debug("journal_trimmed", segments=deleted, left=segments)
