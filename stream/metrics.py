"""Prometheus metrics of the stream worker."""

import contextlib
from datetime import datetime, timedelta

from prometheus_client import Counter, Gauge, Histogram

EVENTS_WRITTEN = Counter("sentinel_sink_events_written", "Events inserted into activity_log.")
DEAD_LETTERS = Counter(
    "sentinel_dlq_records", "Records sent to the dead-letter topic.", labelnames=["reason"]
)
SINK_BATCH_SECONDS = Histogram(
    "sentinel_sink_batch_seconds",
    "Time to decode, insert and dead-letter one batch.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DLQ_SHARE = Gauge(
    "sentinel_dlq_share",
    "Share of the partition's recent records (events) that were dead-lettered.",
    labelnames=["partition"],
)
DLQ_BUDGET_EXCEEDED = Gauge(
    "sentinel_dlq_budget_exceeded",
    "1 while the partition's dead-lettered share is above SENTINEL_DLQ_BUDGET_SHARE.",
    labelnames=["partition"],
)
SINK_RETRIES = Counter(
    "sentinel_sink_retries",
    "Sink writes retried: ClickHouse unreachable or refusing, or the broker not acknowledging.",
)
SINK_FAILURES = Counter(
    "sentinel_sink_failures",
    "Sink batches that failed with an unforeseen error and were tried again.",
    labelnames=["error"],
)
DUPLICATES_DROPPED = Counter(
    "sentinel_sink_duplicates_dropped",
    "Events dropped because the activity log already held them (resent or redelivered).",
)
WINDOWS_WRITTEN = Counter("sentinel_sink_windows_written", "Window rollup rows written.")

STREAM_RESUMED = Counter(
    "sentinel_stream_resumed",
    "Partitions sought back to their committed offset: records waited, the agent got none.",
)
CONSUMER_LAG = Gauge(
    "sentinel_consumer_lag",
    "Records of the events topic not yet committed by this worker.",
    labelnames=["partition"],
)
PASS_REQUESTS = Counter(
    "sentinel_pass_requests", "Requests made with a pass.", labelnames=["project_id", "pass_id"]
)
PASS_ERRORS = Counter(
    "sentinel_pass_errors",
    "Failed requests made with a pass.",
    labelnames=["project_id", "pass_id"],
)


PASS_SERIES_DROPPED = Counter(
    "sentinel_pass_series_dropped",
    "Observations of passes not exposed per pass: SENTINEL_METRICS_PASS_SERIES_MAX reached.",
)


class PassMetrics:
    """Per-pass counters with a bounded exposition: at most `max_series` passes at once,
    and a pass idle for `idle` is dropped (Prometheus' rate() handles the counter
    reappearing from zero). Per-pass figures belong in ClickHouse and the stream's
    alerts; a million passes must not become a million series (Kong declined them)."""

    def __init__(self, idle: timedelta = timedelta(hours=1), max_series: int = 1000) -> None:
        self._idle = idle
        self._max_series = max_series
        self._last_seen: dict[tuple[str, str], datetime] = {}

    def observe(
        self, project_id: str, pass_id: str, requests: int, errors: int, now: datetime
    ) -> None:
        key = (project_id, pass_id)
        if key not in self._last_seen and len(self._last_seen) >= self._max_series:
            PASS_SERIES_DROPPED.inc()
            return
        if requests:
            PASS_REQUESTS.labels(project_id, pass_id).inc(requests)
        if errors:
            PASS_ERRORS.labels(project_id, pass_id).inc(errors)
        if requests or errors:
            self._last_seen[(project_id, pass_id)] = now

    def prune(self, now: datetime) -> int:
        idle = [k for k, seen in self._last_seen.items() if now - seen > self._idle]
        for key in idle:
            for counter in (PASS_REQUESTS, PASS_ERRORS):
                with contextlib.suppress(KeyError):
                    counter.remove(*key)
            del self._last_seen[key]
        return len(idle)
