"""A worker killed after its ClickHouse insert and before its offset commit.

The first stack commits offsets only once an hour, so the kill (SIGKILL, no
shutdown hooks) is sure to fall between the insert and the commit; the
restarted stack must receive the same records again, and every event must
still appear exactly once.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.e2e.stack import committed_and_end_offsets, start_stack, wait_until_caught_up
from tests.factories import raw_event

PROJECT = "proj-crash"


def test_events_appear_exactly_once_after_a_kill_between_insert_and_commit(
    own_broker: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "var"
    pass_id = f"SP-{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC)
    events = [
        raw_event(
            project_id=PROJECT,
            pass_id=pass_id,
            # over five and a half hours: the endpoint breakdown reads the whole ones
            # from its hourly rollup, the edges from the raw log
            started_at=(now - timedelta(seconds=20 * i)).isoformat(),
        )
        for i in range(1000)
    ]
    first = start_stack(
        data_dir, KAFKA_BOOTSTRAP_SERVERS=own_broker, SENTINEL_COMMIT_INTERVAL_SECONDS="3600"
    )
    try:
        with first.client([PROJECT]) as http:
            assert http.post("/v1/events", json=events).json()["accepted"] == 1000
            deadline = time.monotonic() + 10
            while True:
                page = http.get(f"/v1/projects/{PROJECT}/passes/{pass_id}/activity")
                if page.status_code == 200 and page.json()["total"] == 1000:
                    break
                assert time.monotonic() < deadline, page.text
                time.sleep(0.05)
        committed, ends = asyncio.run(committed_and_end_offsets(own_broker))
        assert sum(ends.values()) > 0
        assert all(committed.get(p, 0) < end for p, end in ends.items() if end > 0), (
            "offsets were committed before the kill; the test would prove nothing"
        )
    finally:
        first.stop(signal.SIGKILL)

    second = start_stack(data_dir, KAFKA_BOOTSTRAP_SERVERS=own_broker)
    try:
        wait_until_caught_up(own_broker)
        # the records came again and were recognised as already written
        assert second.metric("sentinel_sink_duplicates_dropped_total") >= 1000
        with second.client([PROJECT]) as http:
            ids: list[str] = []
            for page in range(1, 11):
                body = http.get(
                    f"/v1/projects/{PROJECT}/passes/{pass_id}/activity",
                    params={"page": page, "per_page": 100},
                ).json()
                assert body["total"] == 1000
                ids += [row["event_id"] for row in body["items"]]
            # and each rollup tier counted each once: the 15-minute tier answers the
            # 24 h range, the UTC day tier the 7 days in UTC
            for rng in ("24h", "7d"):
                metrics = http.get(
                    f"/v1/projects/{PROJECT}/passes/{pass_id}/usage", params={"range": rng}
                ).json()["metrics"]
                assert metrics["total_requests"] == 1000, rng
            breakdown = http.get(
                f"/v1/projects/{PROJECT}/passes/{pass_id}/endpoints", params={"range": "24h"}
            ).json()
            assert sum(item["total_requests"] for item in breakdown["items"]) == 1000
            assert sum(breakdown["status_codes"]["classes"].values()) == 1000
        assert sorted(ids) == sorted(e["event_id"] for e in events)
    finally:
        second.stop()
