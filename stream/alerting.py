"""The error-rate alerts' wiring in the worker: their table, the evaluation timer, and
publishing (ClickHouse, the alerts topic, Alertmanager)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import faust
import structlog
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from sentinel_usage.analytics.alerts import AlertStore
from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.core import topics
from sentinel_usage.core.alerts import AlertEvent
from sentinel_usage.core.clock import SYSTEM_CLOCK
from sentinel_usage.core.errors import RetryLaterError
from sentinel_usage.core.periodic import periodic
from sentinel_usage.core.settings import Settings
from sentinel_usage.stream import alertmanager
from sentinel_usage.stream.alertmanager import AlertmanagerNotifier
from sentinel_usage.stream.alerts import ErrorRateEvaluator
from sentinel_usage.stream.metrics import PassMetrics
from sentinel_usage.stream.table_store import ChangelogBatches, TableWindowStore
from sentinel_usage.stream.windows import UsageWindows

log = structlog.get_logger(__name__)

ALERTS_FIRING = Gauge("sentinel_alerts_firing", "Error-rate alerts firing now.")
ALERTS_PUBLISHED = Counter(
    "sentinel_alerts_published", "Alert transitions published.", labelnames=["state"]
)


def add_alerting(
    app: faust.App,
    settings: Settings,
    clickhouse: ClickHouse,
    windows: UsageWindows,
    pass_metrics: PassMetrics,
    changelog: ChangelogBatches,
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
        TableWindowStore(alert_table, changelog),
        publish,
        changelog.flush,
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
        except (RetryLaterError, KafkaError) as exc:
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
