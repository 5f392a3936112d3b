"""The Faust application: topics, the windows table, the sink agent, and how a worker runs it."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import faust
import structlog
from aiokafka.errors import KafkaError
from mode.supervisors import CrashingSupervisor

from sentinel_usage.analytics.alerts import AlertStore
from sentinel_usage.analytics.rollups import RollupStore
from sentinel_usage.analytics.writer import ActivityLogWriter
from sentinel_usage.core import topics
from sentinel_usage.core.alerts import AlertEvent
from sentinel_usage.core.clock import SYSTEM_CLOCK
from sentinel_usage.core.errors import DependencyUnavailableError
from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.periodic import periodic
from sentinel_usage.core.settings import Settings
from sentinel_usage.stream import alertmanager
from sentinel_usage.stream.alertmanager import AlertmanagerNotifier
from sentinel_usage.stream.alerts import ErrorRateEvaluator
from sentinel_usage.stream.budget import DeadLetterBudgetPolicy
from sentinel_usage.stream.decode import DeadLetter, SourceRecord
from sentinel_usage.stream.metrics import (
    ALERTS_FIRING,
    ALERTS_PUBLISHED,
    CONSUMER_LAG,
    STREAM_RESUMED,
    PassMetrics,
)
from sentinel_usage.stream.sink import SinkPolicy, UsageSink
from sentinel_usage.stream.windows import UsageWindows, WindowPolicy

log = structlog.get_logger(__name__)

APP_ID = topics.CONSUMER_GROUP  # Faust's app id is the Kafka consumer group


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
        stream_buffer_maxsize=settings.stream_buffer_messages,
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
        window_policy(settings),
        epoch=settings.broker_epoch,
    )

    async def flush_changelog() -> None:
        await app.producer.flush()

    pass_metrics = PassMetrics(
        idle=timedelta(minutes=settings.metrics_pass_idle_minutes),
        max_series=settings.metrics_pass_series_max,
    )
    sink = UsageSink(
        ActivityLogWriter(clickhouse),
        RollupStore(clickhouse),
        windows,
        send_dead_letter,
        flush_changelog,
        validator,
        SinkPolicy(
            evict_every_seconds=settings.window_evict_every_seconds,
            # the embedded mode's worker is the log's only writer
            id_refresh_seconds=None if settings.ingest_journal else 30.0,
            dead_letter_budget=DeadLetterBudgetPolicy(
                share=settings.dlq_budget_share, records=settings.dlq_budget_records
            ),
        ),
        pass_metrics=pass_metrics,
    )
    _add_alerting(app, settings, clickhouse, windows, pass_metrics, flush_changelog)

    batcher = SinkBatcher(settings.sink_batch_max_messages, settings.sink_batch_bytes)
    progress = SinkProgress()
    guard = StallGuard(max(STALL_SECONDS, 3 * settings.commit_interval_seconds))

    @app.on_partitions_revoked.connect
    async def drop_revoked(sender: Any, /, *args: Any, signal: Any, **kw: Any) -> None:
        # Not acked, so not committed: the partition's new owner reads them again.
        (revoked,) = args
        dropped = batcher.drop({tp.partition for tp in revoked if tp.topic == topics.EVENTS})
        if dropped:
            log.info("sink_batch_dropped_on_revocation", messages=dropped)

    # CrashingSupervisor: should the agent die anyway, the worker stops (exit code
    # non-zero, for `up` or a supervisor to restart). Faust's default restarts the
    # agent in place, past the records it had taken and not acked: they were
    # neither written nor committed, and waited for the next restart (issue 11).
    @app.agent(events_topic, name="activity-sink", supervisor_strategy=CrashingSupervisor)
    async def activity_sink(stream: Any) -> None:
        # noack_take: Faust must not ack (and so commit) a record before its rows
        # are in ClickHouse. take()/take_events() ack in a `finally`, which also
        # runs when the batch fails or the worker is cancelled mid-insert.
        progress.stream = stream
        async for taken in stream.noack_take(
            settings.sink_batch_messages, within=settings.sink_batch_seconds
        ):
            # Join takes only while more is already buffered: noack_take never yields an
            # empty take, so a full take held while the stream went quiet stayed
            # unwritten (and unacked, which also hung the stop) until the next record.
            more = len(taken) == settings.sink_batch_messages and _buffered(stream) > 0
            batch = batcher.add(taken, more_waiting=more)
            if batch:
                progress.busy = True
                await sink.process_until_done(_records(batch))
                for event in batch:
                    await stream.ack(event)
                progress.busy = False

    app.timer(interval=settings.lag_every_seconds, name="update-lag")(
        periodic("update_lag", lambda: _update_lag(app))
    )
    app.timer(interval=settings.lag_every_seconds, name="resume-stalled")(
        periodic(
            "resume_stalled",
            lambda: _resume_stalled(app, progress, batcher, guard),
        )
    )
    return app


@dataclass
class SinkProgress:
    """What the stall guard reads of the sink agent."""

    stream: Any = None
    busy: bool = False


STALL_SECONDS = 10.0


class StallGuard:
    """Which partitions are stalled: records past the committed offset, the same
    committed offset for `after` seconds, while nothing is buffered for the agent and
    no batch is in process. Healthy, the committed offset moves one commit interval
    after a batch, so `after` must be several commit intervals."""

    def __init__(self, after: float) -> None:
        self._after = after
        self._since: dict[int, tuple[int | None, float]] = {}

    def check(
        self,
        partition: int,
        committed: int | None,
        highwater: int | None,
        waiting: bool,
        now: float,
    ) -> bool:
        """`waiting`: events buffered for the agent or a batch in process."""
        if waiting or highwater is None or (committed or 0) >= highwater:
            self._since.pop(partition, None)
            return False
        first = self._since.get(partition)
        if first is None or first[0] != committed:
            self._since[partition] = (committed, now)
            return False
        if now - first[1] < self._after:
            return False
        del self._since[partition]
        return True


async def _resume_stalled(
    app: faust.App, progress: SinkProgress, batcher: SinkBatcher, guard: StallGuard
) -> None:
    """Seek a stalled partition back to its committed offset: a redelivery, which the
    sink deduplicates. Seen once in a full test run: after a restart that restored
    changelog state, Faust started fetching before it sought the stream partitions
    to their committed offsets, and the one record waiting was never handed to the
    agent (nothing buffered, nothing committed) until the next restart."""
    if progress.stream is None:
        return
    waiting = progress.busy or batcher.pending > 0 or _buffered(progress.stream) > 0
    now = time.monotonic()
    for tp, done, highwater in _event_positions(app):
        if guard.check(tp.partition, done, highwater, waiting, now):
            log.warning("stream_stalled_resuming", partition=tp.partition, committed=done)
            STREAM_RESUMED.inc()
            await app.consumer.seek(tp, done or 0)


def window_policy(settings: Settings) -> WindowPolicy:
    return WindowPolicy(
        size=timedelta(seconds=settings.window_seconds),
        resident=timedelta(minutes=settings.window_resident_minutes),
    )


def _add_alerting(
    app: faust.App,
    settings: Settings,
    clickhouse: Any,
    windows: UsageWindows,
    pass_metrics: PassMetrics,
    flush_changelog: Callable[[], Awaitable[None]],
) -> None:
    """The error-rate evaluation, every `alert_every_seconds`, on every worker (each
    evaluates the passes of its own partitions)."""
    alert_table = app.Table(
        "alert-state",
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=settings.events_topic_partitions,
    )
    rule = settings.alert_rule
    store = AlertStore(clickhouse)
    hold = rule.every * 4  # how long Alertmanager keeps a firing alert without news
    notifier = (
        AlertmanagerNotifier(settings.alertmanager_url) if settings.alertmanager_url else None
    )

    async def publish(events: list[AlertEvent]) -> None:
        # ClickHouse first: a consumer of the topic then finds the alert in the API.
        await asyncio.to_thread(store.write, events)
        for event in events:
            await app.producer.send_and_wait(
                topics.ALERTS, event.pass_id.encode(), event.to_json(),
                partition=None, timestamp=None, headers=None,
            )  # fmt: skip
        if notifier is not None:
            now = SYSTEM_CLOCK.now()
            notifier.notify([alertmanager.from_event(e, now, hold) for e in events])
        for event in events:
            ALERTS_PUBLISHED.labels(state=event.state).inc()
            log.warning("alert_" + event.state, **{k: str(v) for k, v in vars(event).items()})

    evaluator = ErrorRateEvaluator(
        rule,
        windows,
        timedelta(seconds=settings.window_seconds),
        TableWindowStore(alert_table),
        publish,
        flush_changelog,
    )
    started = False

    async def evaluate_alerts() -> None:
        nonlocal started
        if notifier is not None and not started:
            await notifier.start()
        started = True
        now = SYSTEM_CLOCK.now()
        try:
            firing = await evaluator.evaluate(now)
        except (DependencyUnavailableError, KafkaError) as exc:
            # The outbox keeps what was not published; the next round retries it.
            log.warning("alert_evaluation_deferred", error=repr(exc))
            return
        ALERTS_FIRING.set(len(firing))
        if notifier is not None:
            notifier.notify([alertmanager.still_firing(s, now, hold) for s in firing])
        pass_metrics.prune(now)

    app.timer(interval=settings.alert_every_seconds, name="evaluate-alerts")(
        periodic("evaluate_alerts", evaluate_alerts)
    )


async def _update_lag(app: faust.App) -> None:
    for tp, done, highwater in _event_positions(app):
        # None until the first fetch of the partition returned (measured: a None
        # here once killed ingest and API together, issue 11).
        if highwater is not None:
            CONSUMER_LAG.labels(partition=str(tp.partition)).set(max(0, highwater - (done or 0)))


def _event_positions(app: faust.App) -> list[tuple[Any, int | None, int | None]]:
    """(partition, committed offset, high-water mark) of each events partition this
    worker holds; either may be None (nothing committed, not fetched yet). Faust keeps
    the committed offsets in a private map: reading it is harmless, re-check on upgrade."""
    consumer = app.consumer
    committed = getattr(consumer, "_committed_offset", {})
    return [
        (tp, committed.get(tp), consumer.highwater(tp))
        for tp in consumer.assignment()
        if tp.topic == topics.EVENTS
    ]


class SinkBatcher:
    """Joins Faust's takes into sink batches of a useful size.

    A take is `sink_batch_messages` messages or what came within
    `sink_batch_seconds`. Envelopes from the HTTP ingest may hold only a few
    events each (one per pass of a request), and every sink batch costs a few
    ClickHouse round trips (~15 ms): so while takes come back full, they are
    joined until the batch holds `max_bytes` of messages or `max_messages`;
    a take that is not full (the stream is keeping up) goes at once.
    """

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._pending: list[Any] = []
        self._bytes = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def drop(self, partitions: set[int]) -> int:
        """Forget what is pending from `partitions` (revoked: not ours to write or
        ack any more); return how many messages were dropped."""
        kept = [e for e in self._pending if e.message.partition not in partitions]
        dropped = len(self._pending) - len(kept)
        self._pending = kept
        self._bytes = sum(len(event.message.value or b"") for event in kept)
        return dropped

    def add(self, taken: Sequence[Any], more_waiting: bool) -> list[Any]:
        """The batch to process now (empty: keep taking)."""
        self._pending.extend(taken)
        self._bytes += sum(len(event.message.value or b"") for event in taken)
        if (
            more_waiting
            and self._bytes < self._max_bytes
            and len(self._pending) < self._max_messages
        ):
            return []
        batch, self._pending, self._bytes = self._pending, [], 0
        return batch


def _buffered(stream: Any) -> int:
    """Events Faust has read ahead for this agent and not yet handed out (the queue of
    the agent's channel clone: faust.channels.Channel.queue)."""
    return int(stream.channel.queue.qsize())


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
