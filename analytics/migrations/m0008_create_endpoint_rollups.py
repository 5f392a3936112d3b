"""The endpoint breakdown's rollup: per pass, UTC hour, route template and status code,
the requests, errors, latency sum and sketch of the raw log's rows, so that a month of a
busy pass is a few thousand rows, not millions (issue 17).

A materialized view fills it from every insert into `activity_log`. Each event is
inserted once: the sink drops the events the log holds before it inserts, and again
before it retries a failed insert (chDB 26.9 still feeds a view a block that the log's
own insert deduplication skipped). Reads sum the rows (AggregatingMergeTree folds them
at merges); the range's edges finer than an hour are read from the raw log.

Filled here from the raw log already held: run it, as every migration, before the worker
starts (an insert between the fill and the view would be missed).
"""

from sentinel_usage.analytics.migrations.context import MigrationContext
from sentinel_usage.core.aggregate import REQUEST_TYPES
from sentinel_usage.core.sketch import KEYS_PER_DOUBLING, MIN_INDEXABLE_MS

_COLUMNS = "project_id, pass_id, hour, endpoint, status_code, requests, errors, latency_sum_ms, "
_COLUMNS += "sketch_zero_count, sketch"

# What an hour of rows adds up to: the same expressions as analytics/endpoints.py reads
# the raw log's edges with (the sketch's keys are LatencySketch's).
_AGGREGATE = f"""
    SELECT project_id, pass_id, toStartOfHour(started_at) AS hour, endpoint,
           ifNull(status_code, 0) AS status_code, count() AS requests,
           countIf(NOT success) AS errors, sum(duration_ms) AS latency_sum_ms,
           countIf(duration_ms < {MIN_INDEXABLE_MS!r}) AS sketch_zero_count,
           sumMapIf(map(toInt64(ceil(log2(duration_ms) * {KEYS_PER_DOUBLING!r})), toUInt64(1)),
                    duration_ms >= {MIN_INDEXABLE_MS!r}) AS sketch
    FROM activity_log{{final}}
    WHERE activity_type IN ({", ".join(f"'{t}'" for t in sorted(REQUEST_TYPES))})
    GROUP BY project_id, pass_id, hour, endpoint, status_code
"""


def forward(ctx: MigrationContext) -> list[str]:
    return [
        f"""
        CREATE TABLE IF NOT EXISTS endpoint_rollups
        (
            project_id        LowCardinality(String),
            pass_id           String,
            hour              DateTime('UTC'),
            endpoint          LowCardinality(String),
            status_code       UInt16,  -- 0: none given
            requests          SimpleAggregateFunction(sum, UInt64),
            errors            SimpleAggregateFunction(sum, UInt64),
            latency_sum_ms    SimpleAggregateFunction(sum, Float64),
            sketch_zero_count SimpleAggregateFunction(sum, UInt64),
            sketch            SimpleAggregateFunction(sumMap, Map(Int64, UInt64))
        )
        ENGINE = AggregatingMergeTree
        PARTITION BY toYYYYMM(hour)
        ORDER BY (project_id, pass_id, hour, endpoint, status_code)
        TTL hour + INTERVAL {ctx.retention_days} DAY
        """,
        f"INSERT INTO endpoint_rollups ({_COLUMNS}) {_AGGREGATE.format(final=' FINAL')}",
        "CREATE MATERIALIZED VIEW IF NOT EXISTS endpoint_rollups_from_log TO endpoint_rollups "
        f"AS {_AGGREGATE.format(final='')}",
    ]


def backward(ctx: MigrationContext) -> list[str]:
    return [
        "DROP VIEW IF EXISTS endpoint_rollups_from_log",
        "DROP TABLE IF EXISTS endpoint_rollups",
    ]
