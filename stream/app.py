"""The Faust application's wiring: the events topic, the windows table, the sink agent
and its timers. The parts live apart: the batcher (batcher.py), the write pipeline
(pipeline.py), partition positions and the stall guard (positions.py), the alerts
(alerting.py), running a worker (worker.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, cast

import faust
import structlog
from mode.supervisors import CrashingSupervisor

from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.analytics.rollups import RollupStore
from sentinel_usage.analytics.writer import ActivityLogWriter
from sentinel_usage.core import topics
from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.periodic import periodic
from sentinel_usage.core.settings import Settings
from sentinel_usage.stream.alerting import add_alerting
from sentinel_usage.stream.batcher import SinkBatcher, buffered
from sentinel_usage.stream.budget import DeadLetterBudgetPolicy
from sentinel_usage.stream.decode import DeadLetter
from sentinel_usage.stream.metrics import PassMetrics
from sentinel_usage.stream.pipeline import SinkPipeline
from sentinel_usage.stream.positions import (
    STALL_SECONDS,
    SinkProgress,
    StallGuard,
    resume_stalled,
    update_lag,
)
from sentinel_usage.stream.sink import SinkPolicy, UsageSink
from sentinel_usage.stream.table_store import ChangelogBatches, TableWindowStore
from sentinel_usage.stream.windows import UsageWindows, WindowPolicy

log = structlog.get_logger(__name__)

APP_ID = topics.CONSUMER_GROUP  # Faust's app id is the Kafka consumer group


def create_stream_app(
    settings: Settings,
    clickhouse: ClickHouse,
    validator: EventValidator,
    rollups_clickhouse: ClickHouse | None = None,
) -> faust.App:
    """The worker's app. `rollups_clickhouse`: a second connection for the rollups, so
    that a batch's windows are written while its rows are (default: `clickhouse`)."""
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
    # aiokafka's producer, which Faust's transport starts with the app (its ProducerT
    # type does not declare it)
    changelog = ChangelogBatches(lambda: cast(Any, app.producer)._ensure_producer())
    windows = UsageWindows(
        TableWindowStore(windows_table, changelog),
        window_policy(settings),
        epoch=settings.broker_epoch,
    )

    pass_metrics = PassMetrics(
        idle=timedelta(minutes=settings.metrics_pass_idle_minutes),
        max_series=settings.metrics_pass_series_max,
    )
    sink = UsageSink(
        ActivityLogWriter(clickhouse),
        RollupStore(rollups_clickhouse or clickhouse, settings.rollup_tiers),
        windows,
        send_dead_letter,
        changelog.flush,
        validator,
        SinkPolicy(
            evict_every_seconds=settings.window_evict_every_seconds,
            rollup_keys_span=timedelta(minutes=settings.window_known_minutes),
            # the embedded mode's worker is the log's only writer
            id_refresh_seconds=None if settings.ingest_journal else 30.0,
            dead_letter_budget=DeadLetterBudgetPolicy(
                share=settings.dlq_budget_share, records=settings.dlq_budget_records
            ),
        ),
        pass_metrics=pass_metrics,
    )
    add_alerting(app, settings, clickhouse, windows, pass_metrics, changelog)

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

    @app.on_partitions_assigned.connect
    async def take_over(sender: Any, /, *args: Any, signal: Any, **kw: Any) -> None:
        # A partition taken over from a worker that died mid-batch: the windows it
        # flushed are written to the rollups, and the ids it wrote are in the filter,
        # before its records come again (UsageSink.partitions_assigned).
        sink.partitions_assigned()

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

        async def ack(batch: Sequence[Any]) -> None:
            for event in batch:
                await stream.ack(event)

        pipeline = progress.pipeline = SinkPipeline(sink, ack)
        try:
            async for taken in stream.noack_take(
                settings.sink_batch_messages, within=settings.sink_batch_seconds
            ):
                # Join takes only while more is already buffered: noack_take never yields
                # an empty take, so a full take held while the stream went quiet stayed
                # unwritten (and unacked, which also hung the stop) until the next record.
                more = len(taken) == settings.sink_batch_messages and buffered(stream) > 0
                batch = batcher.add(taken, more_waiting=more)
                if batch:
                    await pipeline.submit(batch)
        finally:
            await pipeline.close()

    app.timer(interval=settings.lag_every_seconds, name="update-lag")(
        periodic("update_lag", lambda: update_lag(app))
    )
    app.timer(interval=settings.lag_every_seconds, name="resume-stalled")(
        periodic(
            "resume_stalled",
            lambda: resume_stalled(app, progress, batcher, guard),
        )
    )
    return app


def window_policy(settings: Settings) -> WindowPolicy:
    return WindowPolicy(
        size=timedelta(seconds=settings.window_seconds),
        resident=timedelta(minutes=settings.window_resident_minutes),
        coarser=tuple(tier.seconds for tier in settings.rollup_tiers[1:]),
    )
