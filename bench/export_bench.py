"""Export latency over a large activity log: 10,000-row exports in each format.

Fills a fresh chDB database with N rows (default 1,000,000; 50 passes of the same
project) by an INSERT ... SELECT inside ClickHouse, then times exports through the
real FastAPI app (in-process ASGI, so no socket overhead is counted) with the
embedded broker running. Prints one summary line, last.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import closing
from pathlib import Path

from fastapi.testclient import TestClient

from sentinel_usage.analytics.clickhouse import connect
from sentinel_usage.analytics.migrate import migrate
from sentinel_usage.analytics.migrations.context import MigrationContext
from sentinel_usage.api.app import create_app
from sentinel_usage.api.auth import issue_token
from sentinel_usage.api.services import build_services
from sentinel_usage.cli.tansu import TansuBroker
from sentinel_usage.core.settings import Settings

SECRET = "bench-secret-" + "x" * 40
PASSES = 50

FILL = """
INSERT INTO activity_log (project_id, pass_id, started_at, event_id, client_id, activity_type,
    endpoint, http_method, status_code, success, duration_ms, client_ip, user_agent,
    error_message, metadata)
SELECT 'bench', concat('SP-', toString(number % {passes:UInt32})),
    now64(3) - toIntervalMillisecond(number * 997 % 2592000000), generateUUIDv4(number), 'agent',
    if(number % 10 = 0, 'token_generation', 'api_request'),
    ['/v1/items/{id}', '/v1/orders', '/v1/search', '/oauth/token'][number % 4 + 1],
    if(number % 3 = 0, 'POST', 'GET'), if(number % 20 = 0, 500, 200), number % 20 != 0,
    (number % 1000) / 3.0, '203.0.113.9', 'agent/1.0 (bench)',
    if(number % 20 = 0, 'upstream timeout', ''), '{"region":"eu","attempt":1}'
FROM numbers({rows:UInt64})
"""

# The pass registry (SQLite, a signing key) of the API under test.
DATA_DIR = Path(tempfile.mkdtemp(prefix="sentinel-bench-"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    # The connection closes before its directory goes: its merges may still be writing there.
    with (
        tempfile.TemporaryDirectory() as tmp,
        TansuBroker() as broker,
        closing(connect(f"chdb://{Path(tmp) / 'ch'}")) as client,
    ):
        migrate(client, MigrationContext())
        started = time.perf_counter()
        client.command(FILL, parameters={"rows": args.rows, "passes": PASSES})
        fill_s = time.perf_counter() - started
        rows = client.command("SELECT count() FROM activity_log")
        settings = Settings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            jwt_secret=SECRET,  # type: ignore[arg-type]
            export_snapshot_lag_seconds=0,
            data_dir=DATA_DIR,
        )
        services = build_services(settings, clickhouse=client)
        headers = {"Authorization": "Bearer " + issue_token(SECRET, ["bench"], ["usage:export"])}
        results: dict[str, float] = {}
        with TestClient(create_app(services)) as http:
            for fmt in ("csv", "json", "jsonl"):
                timings = []
                for attempt in range(args.repeat + 1):
                    t0 = time.perf_counter()
                    response = http.get(
                        f"/v1/projects/bench/passes/SP-{attempt % PASSES}/activity/export",
                        params={"format": fmt},
                        headers=headers,
                    )
                    size = len(response.content)
                    elapsed = (time.perf_counter() - t0) * 1000
                    assert response.status_code == 200, response.text
                    assert response.headers["x-export-rows"] == "10000"
                    if attempt:  # the first one warms caches
                        timings.append(elapsed)
                results[fmt] = statistics.median(timings)
                print(f"{fmt}: median {results[fmt]:.0f} ms of {args.repeat}, {size / 1e6:.1f} MB")
    print(
        f"export: rows_in_log={rows} fill_s={fill_s:.1f} "
        + " ".join(f"{fmt}_10k_ms={ms:.0f}" for fmt, ms in results.items())
    )


if __name__ == "__main__":
    main()
