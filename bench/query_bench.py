"""Query latency over a large activity log: the usage endpoint (24h, 7d, 30d), a
filtered activity page and a 10,000-row export, through the real app (in-process).

The log is filled inside ClickHouse (INSERT ... SELECT from numbers()), and the
minute rollups are computed from it in SQL with the same bucket mapping as
LatencySketch, as the worker would have written them; the coarser tiers from those,
as the upgrade to them does.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from sentinel_usage.analytics.clickhouse import connect
from sentinel_usage.analytics.migrate import migrate
from sentinel_usage.analytics.migrations.context import MigrationContext
from sentinel_usage.analytics.migrations.m0007_create_rollup_tiers import (
    FILLING,
    fill_from_finest,
)
from sentinel_usage.api.app import create_app
from sentinel_usage.api.auth import issue_token
from sentinel_usage.api.services import build_services
from sentinel_usage.core.settings import Settings
from sentinel_usage.core.sketch import KEYS_PER_DOUBLING
from sentinel_usage.core.windows import COARSE_TABLES

COARSE_TIERS = {table: seconds for seconds, table in COARSE_TABLES.items()}

SECRET = "bench-secret-" + "x" * 40

FILL_LOG = """
INSERT INTO activity_log (project_id, pass_id, started_at, event_id, client_id, activity_type,
    endpoint, http_method, status_code, success, duration_ms, client_ip, user_agent,
    error_message, metadata)
SELECT 'bench', concat('SP-', toString(number % {passes:UInt32})),
    now64(3) - toIntervalMillisecond(number * 7919 % 2592000000), generateUUIDv4(number), 'agent',
    if(number % 20 = 0, 'token_generation', 'api_request'),
    ['/v1/items/{id}', '/v1/orders', '/v1/search', '/v1/users/{id}'][number % 4 + 1],
    if(number % 3 = 0, 'POST', 'GET'), if(number % 25 = 0, 500, 200), number % 25 != 0,
    exp(4.5 + 0.8 * sin(number)), '203.0.113.9', 'agent/1.0', '', '{}'
FROM numbers({rows:UInt64})
"""

FILL_ROLLUPS = """
INSERT INTO usage_rollups (project_id, pass_id, window_start, window_seconds, version,
    total_requests, success_count, error_count, token_generations, token_failures,
    latency_sum_ms, latency_count, latency_max_ms, sketch_zero_count, sketch, endpoint_counts,
    last_event_at, source_partition, last_offset)
SELECT project_id, pass_id, toDateTime64(toStartOfMinute(started_at), 3, 'UTC') AS w, 60, 1,
    countIf(r), countIf(r AND success), countIf(r AND NOT success),
    countIf(NOT r), countIf(NOT r AND NOT success),
    sumIf(duration_ms, r), countIf(r), maxIf(duration_ms, r), countIf(r AND duration_ms < 0.001),
    sumMapIf(map(toInt32(ceil(log(duration_ms) * {multiplier:Float64})), toUInt64(1)),
             r AND duration_ms >= 0.001),
    sumMapIf(map(endpoint, toUInt64(1)), r), max(started_at), 0, 0
FROM (SELECT *, activity_type != 'token_generation' AS r FROM activity_log)
GROUP BY project_id, pass_id, w
"""

# The pass registry (SQLite, a signing key) of the API under test.
DATA_DIR = Path(tempfile.mkdtemp(prefix="sentinel-bench-"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(directory: Path, bootstrap: str, rows: int, repeat: int = 20) -> dict[str, float]:
    client = connect(f"chdb://{directory}")
    # Minutes kept while the coarser tiers are filled from them; then the defaults.
    migrate(client, FILLING)
    passes = max(1, rows // 100_000)
    started = time.perf_counter()
    client.command(FILL_LOG, parameters={"rows": rows, "passes": passes})
    # log_gamma(v) = ln(v) / ln(2) * KEYS_PER_DOUBLING: the keys LatencySketch gives.
    multiplier = KEYS_PER_DOUBLING / math.log(2)
    client.command(FILL_ROLLUPS, parameters={"multiplier": multiplier})
    for table, seconds in COARSE_TIERS.items():
        client.command(fill_from_finest(table, seconds))
    migrate(client, MigrationContext())
    print(f"query: filled {rows} rows ({passes} passes) and rollups in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        jwt_secret=SECRET,  # type: ignore[arg-type]
        export_snapshot_lag_seconds=0,
        data_dir=DATA_DIR,
    )
    services = build_services(settings, clickhouse=client)
    token = issue_token(SECRET, ["bench"], ["usage:read", "usage:export"])
    headers = {"Authorization": f"Bearer {token}"}
    timings: dict[str, list[float]] = {}

    def timed(name: str, path: str, params: dict[str, Any]) -> None:
        for attempt in range(repeat + 1):
            t0 = time.perf_counter()
            response = http.get(path.format(n=attempt % passes), params=params, headers=headers)
            elapsed = (time.perf_counter() - t0) * 1000
            assert response.status_code == 200, response.text
            if attempt:
                timings.setdefault(name, []).append(elapsed)

    with TestClient(create_app(services)) as http:
        usage = "/v1/projects/bench/passes/SP-{n}/usage"
        for rng in ("24h", "7d", "30d"):
            timed(f"usage_{rng}", usage, {"range": rng, "tz": "Europe/Berlin"})
        timed(
            "activity_page",
            "/v1/projects/bench/passes/SP-{n}/activity",
            {"status": "failed", "endpoint": "orders", "per_page": 50},
        )
        timed("export_10k", "/v1/projects/bench/passes/SP-{n}/activity/export", {"format": "csv"})
    client.close()  # before the caller removes `directory`: its merges may still run there
    for name, values in timings.items():
        print(f"query: {name} p50 {statistics.median(values):.0f} ms, "
              f"p95 {percentile(values, 0.95):.0f} ms")  # fmt: skip
    usage_all = timings["usage_24h"] + timings["usage_7d"] + timings["usage_30d"]
    return {
        "usage_p95_ms": percentile(usage_all, 0.95),
        "export_10k_ms": statistics.median(timings["export_10k"]),
        "activity_p95_ms": percentile(timings["activity_page"], 0.95),
    }
