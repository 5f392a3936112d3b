"""The rollup tiers at scale (issue 17), in one run:
- `usage_30d_p95_ms=`: the usage endpoint's 30-day range for one pass holding 50 million
  events over 30 days, through the real app (in-process), in UTC (the day tier) and in
  Asia/Kolkata (the 15-minute tier), the slower of the two; beside it the same range
  answered from minute rows alone, as before the tiers (`usage_30d_minutes_p95_ms=`);
- `endpoints_p95_ms=`: the endpoint breakdown of the same 30 days (UTC, and Asia/Kolkata
  whose range starts on a half hour), each answer's requests checked equal to the usage
  endpoint's; beside it the same breakdown from the raw log alone (`endpoints_30d_log_ms=`);
- `rollup_rows_per_pass=`: the rollup rows a pass active in every minute holds at steady
  state with the default retentions, computed from the settings and checked against
  tables filled by a simulated clock (a window every minute back 401 days, the TTLs then
  applied).

The events are generated and aggregated inside ClickHouse (numbers()), into the minute
rows the worker would write for them, with LatencySketch's keys; the coarser tiers are
filled from those as the upgrade to them fills them. The same events are then inserted
in the raw log, whose insert feeds the endpoint rollup's view as the worker's does.
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi.testclient import TestClient

from sentinel_usage.analytics.clickhouse import ClickHouse, connect
from sentinel_usage.analytics.migrate import migrate
from sentinel_usage.analytics.migrations.context import MigrationContext
from sentinel_usage.analytics.migrations.m0007_create_rollup_tiers import (
    FILLING,
    fill_from_finest,
)
from sentinel_usage.analytics.scope import ProjectScope
from sentinel_usage.analytics.usage import UsageQuery, UsageRange
from sentinel_usage.api.app import create_app
from sentinel_usage.api.auth import issue_token
from sentinel_usage.api.services import build_services
from sentinel_usage.cli.tansu import TansuBroker
from sentinel_usage.core.settings import Settings
from sentinel_usage.core.sketch import KEYS_PER_DOUBLING
from sentinel_usage.core.windows import COARSE_TABLES, DAY, RollupTier

EVENTS = 50_000_000
DAYS = 30
REPEAT = 40
SECRET = "bench-secret-" + "x" * 40

# One pass's events spread evenly over the last 30 days: 5% token exchanges, 4% errors,
# log-normal-ish latencies, 12 endpoints; aggregated per minute as the worker would.
FILL_MINUTES = """
INSERT INTO usage_rollups (project_id, pass_id, window_start, window_seconds, version,
    total_requests, success_count, error_count, token_generations, token_failures,
    latency_sum_ms, latency_count, latency_max_ms, sketch_zero_count, sketch, endpoint_counts,
    last_event_at, source_partition, last_offset)
SELECT 'bench', 'SP-BIG', toDateTime64(toStartOfMinute(t), 3, 'UTC') AS w, 60, 1,
    countIf(r), countIf(r AND ok), countIf(r AND NOT ok), countIf(NOT r),
    countIf(NOT r AND NOT ok), sumIf(d, r), countIf(r), maxIf(d, r), 0,
    sumMapIf(map(toInt32(ceil(log(d) * {multiplier:Float64})), toUInt64(1)), r),
    sumMapIf(map(e, toUInt64(1)), r), max(t), 0, 0
FROM (
    SELECT {now:DateTime64(3, 'UTC')}
               - toIntervalMillisecond(intDiv(number * {span_ms:UInt64}, {events:UInt64})) AS t,
           number % 20 != 0 AS r, number % 25 != 0 AS ok, exp(4.5 + 0.8 * sin(number)) AS d,
           concat('/v1/items/', toString(number % 12)) AS e
    FROM numbers({events:UInt64}))
GROUP BY w
"""

# The same events in the raw log, as the worker inserts them: the endpoint rollup's view
# (migration 0008) fills its hours from this insert.
FILL_LOG = """
INSERT INTO activity_log (project_id, pass_id, started_at, event_id, client_id, activity_type,
    endpoint, http_method, status_code, success, duration_ms, client_ip, user_agent,
    error_message, metadata)
SELECT 'bench', 'SP-BIG',
    {now:DateTime64(3, 'UTC')}
        - toIntervalMillisecond(intDiv(number * {span_ms:UInt64}, {events:UInt64})),
    generateUUIDv4(number), 'agent', if(number % 20 != 0, 'api_request', 'token_generation'),
    concat('/v1/items/', toString(number % 12)), 'GET', if(number % 25 != 0, 200, 503),
    number % 25 != 0, exp(4.5 + 0.8 * sin(number)), '203.0.113.9', 'agent/1.0', '', '{}'
FROM numbers({events:UInt64})
"""

# The endpoint breakdown of a range from the raw log alone, as before the rollup.
FROM_LOG = """
SELECT endpoint, count(), countIf(NOT success), sum(duration_ms),
    sumMap(map(toInt64(ceil(log2(duration_ms) * {keys_per_doubling:Float64})), toUInt64(1)))
FROM activity_log FINAL
WHERE project_id = 'bench' AND pass_id = 'SP-BIG' AND activity_type = 'api_request'
    AND started_at >= {start:DateTime64(3, 'UTC')} AND started_at < {end:DateTime64(3, 'UTC')}
GROUP BY endpoint
"""

# A pass active in every window of every tier, back 401 days from now.
SIMULATE = """
INSERT INTO {table:Identifier} (project_id, pass_id, window_start, window_seconds, version,
    total_requests, success_count, error_count, token_generations, token_failures,
    latency_sum_ms, latency_count, latency_max_ms, sketch_zero_count, sketch, endpoint_counts,
    last_event_at, source_partition, last_offset)
SELECT 'sim', 'SP-SIM', w, {seconds:UInt32}, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, map(1, 1),
    map('/v1/items', 1), w, 0, 0
FROM (SELECT toDateTime64(intDiv(toUnixTimestamp(now()), {seconds:UInt32}) * {seconds:UInt32}
             - number * {seconds:UInt32}, 3, 'UTC') AS w
      FROM numbers(intDiv(401 * 86400, {seconds:UInt32})))
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fill(client: ClickHouse) -> None:
    started = time.perf_counter()
    events = {"now": datetime.now(UTC), "events": EVENTS, "span_ms": DAYS * DAY * 1000}
    client.command(
        FILL_MINUTES, parameters={**events, "multiplier": KEYS_PER_DOUBLING / math.log(2)}
    )
    for seconds, table in COARSE_TABLES.items():
        client.command(fill_from_finest(table, seconds))
    print(f"tiers: {EVENTS:,} events of one pass over {DAYS} days aggregated in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    started = time.perf_counter()
    client.command(FILL_LOG, parameters=events)
    ((hours,),) = client.unscoped_rows("SELECT count() FROM endpoint_rollups", what="bench")
    print(f"tiers: the same events inserted in the raw log in {time.perf_counter() - started:.1f}"
          f" s; the endpoint rollup's view made {hours:,} rows of them")  # fmt: skip


def usage_timings(
    client: ClickHouse, bootstrap: str, data_dir: Path, requests: int
) -> dict[str, list[float]]:
    """The app's 30-day range in UTC and in Asia/Kolkata; each call's count is checked
    against `requests` (UTC, from minute rows alone)."""
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        jwt_secret=SECRET,
        data_dir=data_dir,
    )
    headers = {"Authorization": f"Bearer {issue_token(SECRET, ['bench'], ['usage:read'])}"}
    timings: dict[str, list[float]] = {}
    with TestClient(create_app(build_services(settings, clickhouse=client))) as http:
        for zone in ("UTC", "Asia/Kolkata"):
            for attempt in range(REPEAT + 1):
                t0 = time.perf_counter()
                response = http.get(
                    "/v1/projects/bench/passes/SP-BIG/usage",
                    params={"range": "30d", "tz": zone},
                    headers=headers,
                )
                elapsed = (time.perf_counter() - t0) * 1000
                assert response.status_code == 200, response.text
                if zone == "UTC":
                    assert response.json()["metrics"]["total_requests"] == requests
                if attempt:
                    timings.setdefault(zone, []).append(elapsed)
    return timings


def endpoint_timings(
    client: ClickHouse, bootstrap: str, data_dir: Path
) -> tuple[dict[str, list[float]], dict[str, tuple[datetime, datetime]]]:
    """The app's endpoint breakdown over 30 days in UTC (whole hours only) and in
    Asia/Kolkata (a half-hour edge from the raw log); each answer's requests are checked
    equal to the usage endpoint's for the same range (rollup tiers, another table)."""
    settings = Settings(kafka_bootstrap_servers=bootstrap, jwt_secret=SECRET, data_dir=data_dir)
    headers = {"Authorization": f"Bearer {issue_token(SECRET, ['bench'], ['usage:read'])}"}
    timings: dict[str, list[float]] = {}
    ranges = {}
    with TestClient(create_app(build_services(settings, clickhouse=client))) as http:
        for zone in ("UTC", "Asia/Kolkata"):
            asked = {"range": "30d", "tz": zone}
            usage = http.get("/v1/projects/bench/passes/SP-BIG/usage", params=asked,
                             headers=headers).json()  # fmt: skip
            for attempt in range(REPEAT + 1):
                t0 = time.perf_counter()
                response = http.get(
                    "/v1/projects/bench/passes/SP-BIG/endpoints",
                    params={**asked, "per_page": 100},
                    headers=headers,
                )
                elapsed = (time.perf_counter() - t0) * 1000
                assert response.status_code == 200, response.text
                body = response.json()
                requests = sum(item["total_requests"] for item in body["items"])
                assert requests == usage["metrics"]["total_requests"], (zone, requests)
                if attempt:
                    timings.setdefault(zone, []).append(elapsed)
            ranges[zone] = (
                datetime.fromisoformat(body["from"]),
                datetime.fromisoformat(body["to"]),
            )
    return timings, ranges


def endpoints_from_log(client: ClickHouse, start: datetime, end: datetime) -> list[float]:
    """The same breakdown from the raw log alone, as before the rollup."""
    timings = []
    for _ in range(3):
        t0 = time.perf_counter()
        client.unscoped_rows(
            FROM_LOG,
            {"start": start, "end": end, "keys_per_doubling": KEYS_PER_DOUBLING},
            what="bench",
        )
        timings.append((time.perf_counter() - t0) * 1000)
    return timings


def minutes_only(client: ClickHouse) -> tuple[list[float], int]:
    """The 30-day range from minute rows alone (one tier, kept long enough), as before
    the tiers; and its request count, which the tiers must give too."""
    query = UsageQuery(client, (RollupTier(60, 400, "usage_rollups"),))
    timings = []
    for attempt in range(REPEAT // 4 + 1):
        t0 = time.perf_counter()
        report = query.usage(
            ProjectScope("bench"), "SP-BIG", UsageRange.MONTH, ZoneInfo("UTC"), datetime.now(UTC)
        )
        elapsed = (time.perf_counter() - t0) * 1000
        if attempt:
            timings.append(elapsed)
    return timings, report.total.total_requests


def rows_per_pass(client: ClickHouse, settings: Settings) -> int:
    computed = sum(tier.rows_held() for tier in settings.rollup_tiers)
    held = 0
    for tier in settings.rollup_tiers:
        client.command(SIMULATE, parameters={"table": tier.table, "seconds": tier.seconds})
        client.command(f"OPTIMIZE TABLE {tier.table} FINAL")  # applies the TTL
        ((count,),) = client.unscoped_rows(
            f"SELECT count() FROM {tier.table} WHERE pass_id = 'SP-SIM'", what="bench"
        )
        print(f"tiers: {tier.table} ({tier.seconds} s windows, {tier.retention_days} days) "
              f"holds {count} rows of the simulated pass; computed {tier.rows_held()}")  # fmt: skip
        # a window starting within the last `retention` days is kept: one more than whole
        assert abs(count - tier.rows_held()) <= 1, (tier, count)
        held += count
    print(f"tiers: {held} rows held in all, {computed} computed from the settings; "
          f"one minute tier of 90 days held {90 * DAY // 60}")  # fmt: skip
    return computed


def run(bootstrap: str) -> dict[str, Any]:
    # The connection closes before its directory goes: its merges may still be writing there.
    with (
        tempfile.TemporaryDirectory(prefix="sentinel-tiers-") as tmp,
        closing(connect(f"chdb://{Path(tmp) / 'clickhouse'}")) as client,
    ):
        # Minutes kept while the coarser tiers are filled from them; then the defaults.
        migrate(client, FILLING)
        fill(client)
        minutes, requests = minutes_only(client)
        migrate(client, MigrationContext())
        timings = usage_timings(client, bootstrap, Path(tmp), requests)
        timings["minutes"] = minutes
        by_endpoint, ranges = endpoint_timings(client, bootstrap, Path(tmp))
        from_log = endpoints_from_log(client, *ranges["Asia/Kolkata"])
        for name, values in by_endpoint.items():
            print(f"tiers: endpoints 30d {name} p50 {statistics.median(values):.1f} ms, "
                  f"p95 {percentile(values, 0.95):.1f} ms")  # fmt: skip
        print(f"tiers: endpoints 30d from the raw log alone: {min(from_log):.0f} ms at best")
        for name, values in timings.items():
            print(f"tiers: usage 30d {name} p50 {statistics.median(values):.1f} ms, "
                  f"p95 {percentile(values, 0.95):.1f} ms")  # fmt: skip
        defaults = Settings(jwt_secret=SECRET, data_dir=Path(tmp))
        rows = rows_per_pass(client, defaults)
    return {
        "usage_30d_p95_ms": max(percentile(timings[z], 0.95) for z in ("UTC", "Asia/Kolkata")),
        "usage_30d_minutes_p95_ms": percentile(timings["minutes"], 0.95),
        "endpoints_p95_ms": max(percentile(by_endpoint[z], 0.95) for z in by_endpoint),
        "endpoints_30d_log_ms": min(from_log),
        "rollup_rows_per_pass": rows,
    }


def main() -> None:
    with TansuBroker() as broker:
        results = run(broker.bootstrap_servers)
    print("bench: " + " ".join(
        f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in results.items()
    ))  # fmt: skip


if __name__ == "__main__":
    main()
