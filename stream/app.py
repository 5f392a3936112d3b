"""The Faust application: topics, the windows table, the sink agent, and how a worker runs it."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

import faust
import structlog

from sentinel_usage.analytics.rollups import RollupStore
from sentinel_usage.analytics.writer import ActivityLogWriter
from sentinel_usage.core import topics
from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.settings import Settings
from sentinel_usage.stream.decode import DeadLetter, SourceRecord
from sentinel_usage.stream.sink import SinkPolicy, UsageSink
from sentinel_usage.stream.windows import UsageWindows, WindowPolicy

log = structlog.get_logger(__name__)

APP_ID = "sentinel-usage"  # also the Kafka consumer group


class TableWindowStore:
    """A Faust table as the windows' store.

    Writes go to the table's local data and to its changelog *at the partition
    of the pass's source record*: Faust would take the partition of the
    stream's current event, and a batch mixes partitions. Recovery after a
    restart or rebalance rebuilds the data from the changelog.
    """

    def __init__(self, table: Any) -> None:
        self._table = table

    def get(self, key: bytes) -> bytes | None:
        value = self._table.data.get(key)
        return bytes(value) if value is not None else None

    def put(self, key: bytes, value: bytes, partition: int) -> None:
        self._table.data[key] = value
        self._table.send_changelog(partition, key, value)

    def delete(self, key: bytes, partition: int) -> None:
        self._table.data.pop(key, None)
        self._table.send_changelog(partition, key, None, value_serializer="raw")

    def values(self) -> Iterable[bytes]:
        return [bytes(v) for v in self._table.data.values()]


def create_stream_app(settings: Settings, clickhouse: Any, validator: EventValidator) -> faust.App:
    if settings.kafka_bootstrap_servers is None:
        raise ValueError("the stream worker needs KAFKA_BOOTSTRAP_SERVERS")
    app = faust.App(
        APP_ID,
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap_servers.split(",")],
        key_serializer="raw",
        value_serializer="raw",
        store="memory://",
        web_enabled=False,
        autodiscover=False,
        datadir=str(settings.data_dir / "faust"),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_interval=settings.commit_interval_seconds,
        # Faust's defaults make a fresh worker wait ~30 s for its first event
        # on a rebalance; these bring it to ~5 s (measured, DESIGN.md).
        broker_session_timeout=settings.broker_session_timeout_seconds,
        broker_rebalance_timeout=settings.broker_session_timeout_seconds,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_seconds,
        topic_partitions=settings.events_topic_partitions,
        topic_replication_factor=settings.kafka_replication_factor,
    )
    events_topic = app.topic(topics.EVENTS, key_type=bytes, value_type=bytes)

    async def send_dead_letter(dead: DeadLetter) -> None:
        await app.producer.send_and_wait(
            topics.DLQ,
            dead.source.key,
            dead.to_json(),
            partition=None,
            timestamp=None,
            headers=None,
        )

    windows_table = app.Table(
        "usage-windows",
        default=None,
        key_type=bytes,
        value_type=bytes,  # the app's serializers are "raw": the bytes are ours
        partitions=settings.events_topic_partitions,
    )
    windows = UsageWindows(
        TableWindowStore(windows_table),
        WindowPolicy(
            size=timedelta(seconds=settings.window_seconds),
            resident=timedelta(minutes=settings.window_resident_minutes),
        ),
    )

    async def flush_changelog() -> None:
        await app.producer.flush()

    sink = UsageSink(
        ActivityLogWriter(clickhouse),
        RollupStore(clickhouse),
        windows,
        send_dead_letter,
        flush_changelog,
        validator,
        SinkPolicy(evict_every_seconds=settings.window_evict_every_seconds),
    )

    @app.agent(events_topic, name="activity-sink")
    async def activity_sink(stream: Any) -> None:
        # noack_take: Faust must not ack (and so commit) a record before its rows
        # are in ClickHouse. take()/take_events() ack in a `finally`, which also
        # runs when the batch fails or the worker is cancelled mid-insert.
        async for batch in stream.noack_take(
            settings.sink_batch_messages, within=settings.sink_batch_seconds
        ):
            await sink.process(_records(batch))
            for event in batch:
                await stream.ack(event)

    return app


def _records(batch: Sequence[Any]) -> list[SourceRecord]:
    return [
        SourceRecord(
            topic=event.message.topic,
            partition=event.message.partition,
            offset=event.message.offset,
            key=event.message.key,
            value=event.message.value,
        )
        for event in batch
    ]


class BoundedShutdownWorker(faust.Worker):
    """A Faust worker whose shutdown cannot hang: once a stop signal arrived, the
    process exits after `shutdown_seconds` whatever is still pending (aiokafka's
    consumer thread was seen to hang when the broker went away first). Nothing
    is lost by it: offsets not committed are redelivered and deduplicated."""

    shutdown_seconds: float = 8.0

    def _schedule_shutdown(self, signal: Any) -> None:  # mode.Worker's signal hook
        watchdog = threading.Timer(self.shutdown_seconds, self._give_up)
        watchdog.daemon = True
        watchdog.start()
        super()._schedule_shutdown(signal)

    def _give_up(self) -> None:
        log.error("shutdown_timeout", seconds=self.shutdown_seconds)
        os._exit(1)


def run_worker(app: faust.App, loglevel: str = "INFO") -> None:
    """Run the Faust worker in this process until SIGINT/SIGTERM; Faust owns the signals."""
    worker = BoundedShutdownWorker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
