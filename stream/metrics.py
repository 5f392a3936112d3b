"""Prometheus metrics of the stream worker."""

from prometheus_client import Counter, Histogram

EVENTS_WRITTEN = Counter("sentinel_sink_events_written", "Events inserted into activity_log.")
DEAD_LETTERS = Counter(
    "sentinel_dlq_records", "Records sent to the dead-letter topic.", labelnames=["reason"]
)
SINK_BATCH_SECONDS = Histogram(
    "sentinel_sink_batch_seconds",
    "Time to decode, insert and dead-letter one batch.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SINK_RETRIES = Counter(
    "sentinel_sink_retries", "ClickHouse inserts retried because ClickHouse was unavailable."
)
DUPLICATES_DROPPED = Counter(
    "sentinel_sink_duplicates_dropped",
    "Events dropped because the activity log already held them (resent or redelivered).",
)
WINDOWS_WRITTEN = Counter("sentinel_sink_windows_written", "Window rollup rows written.")
