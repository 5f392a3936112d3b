"""The first end-to-end path over HTTP: ingest -> Kafka -> Faust -> ClickHouse -> API."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.e2e.stack import Stack
from tests.factories import raw_event

PROJECT = "proj-e2e"


def new_pass() -> str:
    return f"SP-{uuid.uuid4().hex[:10]}"


def batch(pass_id: str, n: int) -> list[dict[str, object]]:
    now = datetime.now(UTC)
    return [
        raw_event(
            project_id=PROJECT,
            pass_id=pass_id,
            started_at=(now - timedelta(milliseconds=37 * i)).isoformat(),
            endpoint=f"/v1/items/{i}",
            status_code=500 if i % 10 == 0 else 200,
            duration_ms=5 + i % 300,
        )
        for i in range(n)
    ]


def wait_for_total(stack: Stack, pass_id: str, total: int, within: float) -> float:
    """Seconds until the activity endpoint reports `total` rows; fails after `within`."""
    started = time.monotonic()
    with stack.client([PROJECT]) as http:
        while time.monotonic() - started < within:
            response = http.get(f"/v1/projects/{PROJECT}/passes/{pass_id}/activity")
            if response.status_code == 200 and response.json()["total"] >= total:
                assert response.json()["total"] == total
                return time.monotonic() - started
            time.sleep(0.05)
    raise AssertionError(f"{total} rows not visible within {within} s")


def test_thousand_events_are_visible_within_five_seconds_and_once_after_a_resend(
    stack: Stack, artifacts_dir: object
) -> None:
    pass_id = new_pass()
    events = batch(pass_id, 1000)
    with stack.client([PROJECT]) as http:
        started = time.monotonic()
        response = http.post("/v1/events", json=events)
        assert response.status_code == 202, response.text
        assert response.json() == {"accepted": 1000, "rejected": []}
        wait_for_total(stack, pass_id, 1000, within=5 - (time.monotonic() - started))
        delay = time.monotonic() - started
        dropped_before = stack.metric("sentinel_sink_duplicates_dropped_total")

        again = http.post("/v1/events", json=events)
        assert again.json() == {"accepted": 1000, "rejected": []}
        deadline = time.monotonic() + 10
        while stack.metric("sentinel_sink_duplicates_dropped_total") < dropped_before + 1000:
            assert time.monotonic() < deadline, "the resent batch was not processed"
            time.sleep(0.1)
        page = http.get(
            f"/v1/projects/{PROJECT}/passes/{pass_id}/activity", params={"per_page": 100}
        ).json()
    assert page["total"] == 1000
    assert page["per_page"] == 100
    assert len(page["items"]) == 100
    starts = [row["started_at"] for row in page["items"]]
    assert starts == sorted(starts, reverse=True)
    assert all(len(s) == len("2026-11-24T09:30:00.000Z") and s.endswith("Z") for s in starts)
    assert {row["endpoint"] for row in page["items"]} == {"/v1/items/{id}"}
    print(f"ingest->visible for 1,000 events: {delay * 1000:.0f} ms")
    (artifacts_dir / "ingest_visible_ms.txt").write_text(f"{delay * 1000:.0f}\n")  # type: ignore[operator]


def test_a_mixed_request_is_accepted_with_each_invalid_event_named(stack: Stack) -> None:
    pass_id = new_pass()
    events = batch(pass_id, 4)
    events[1]["status_code"] = 700
    events[2]["client_ip"] = "not-an-ip"
    del events[2]["endpoint"]
    events.append(raw_event(project_id="someone-else", pass_id=pass_id))
    with stack.client([PROJECT]) as http:
        response = http.post("/v1/events", json=events)
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 2
    assert body["rejected"] == [
        {
            "index": 1,
            "errors": [
                {"field": "status_code", "message": "Input should be less than or equal to 599"}
            ],
        },
        {
            "index": 2,
            "errors": [
                {"field": "endpoint", "message": "Field required"},
                {"field": "client_ip", "message": "is not a valid IPv4 or IPv6 address"},
            ],
        },
        {"index": 4, "errors": [{"field": "project_id", "message": "not granted by this token"}]},
    ]
    wait_for_total(stack, pass_id, 2, within=5)


def test_ndjson_is_accepted_and_a_bad_line_is_reported_by_index(stack: Stack) -> None:
    pass_id = new_pass()
    lines = [orjson.dumps(e) for e in batch(pass_id, 3)]
    lines.insert(1, b"{broken")
    with stack.client([PROJECT]) as http:
        response = http.post(
            "/v1/events",
            content=b"\n".join(lines),
            headers={"Content-Type": "application/x-ndjson"},
        )
    assert response.status_code == 202
    assert response.json()["accepted"] == 3
    (rejected,) = response.json()["rejected"]
    assert rejected["index"] == 1
    assert "line 2 is not valid JSON" in rejected["errors"][0]["message"]
    wait_for_total(stack, pass_id, 3, within=5)


def test_limits_and_malformed_bodies(stack: Stack) -> None:
    with stack.client([PROJECT]) as http:
        too_many = http.post("/v1/events", json=[{}] * 10_001)
        assert too_many.status_code == 413
        assert "at most 10000" in too_many.json()["detail"]
        too_big = http.post(
            "/v1/events",
            content=b"[" + b" " * (5 * 1024 * 1024) + b"]",
            headers={"Content-Type": "application/json"},
        )
        assert too_big.status_code == 413
        assert "5 MiB" in too_big.json()["detail"]
        not_json = http.post(
            "/v1/events", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert not_json.status_code == 422
        assert "not valid JSON" in not_json.json()["detail"]


def test_authentication_scopes_and_project_isolation(stack: Stack) -> None:
    pass_id = new_pass()
    with stack.client([PROJECT]) as http:
        assert http.post("/v1/events", json=batch(pass_id, 1)).json()["accepted"] == 1
    wait_for_total(stack, pass_id, 1, within=5)
    path = f"/v1/projects/{PROJECT}/passes/{pass_id}/activity"

    with stack.client() as anonymous:
        missing = anonymous.get(path)
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"].startswith("Bearer")
        assert anonymous.post("/v1/events", json=[]).status_code == 401
        bad = anonymous.get(path, headers={"Authorization": "Bearer not.a.jwt"})
        assert bad.status_code == 401
    with stack.client([PROJECT], ["events:write"]) as writer_only:
        assert writer_only.get(path).status_code == 403
    with stack.client([PROJECT], ["usage:read"]) as reader_only:
        assert reader_only.post("/v1/events", json=[]).status_code == 403
        assert reader_only.get(path).status_code == 200
        assert reader_only.get(path, params={"per_page": 7}).status_code == 422
        assert reader_only.get(path, params={"page": 0}).status_code == 422
        assert (
            reader_only.get(f"/v1/projects/{PROJECT}/passes/SP-unknown/activity").status_code == 404
        )
    with stack.client(["other-project"]) as stranger:
        response = stranger.get(path)
        assert response.status_code == 404
        assert response.json() == {"detail": "not found"}
        other_path = f"/v1/projects/other-project/passes/{pass_id}/activity"
        assert stranger.get(other_path).json() == {"detail": "not found"}


def test_readiness_reports_each_dependency(stack: Stack) -> None:
    with stack.client() as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"kafka": "ok", "clickhouse": "ok", "migrations": "ok", "registry": "ok"},
    }


async def test_undecodable_records_go_to_the_dlq_and_the_stream_goes_on(stack: Stack) -> None:
    pass_id = new_pass()
    good = batch(pass_id, 1)[0]
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        garbage = await producer.send_and_wait(
            "sentinel.usage.events", b"\x00 definitely not json", key=pass_id.encode()
        )
        invalid = await producer.send_and_wait(
            "sentinel.usage.events",
            orjson.dumps({**good, "event_id": str(uuid.uuid4()), "activity_type": "login"}),
            key=pass_id.encode(),
        )
        await producer.send_and_wait(
            "sentinel.usage.events", orjson.dumps(good), key=pass_id.encode()
        )
    finally:
        await producer.stop()
    await asyncio.to_thread(wait_for_total, stack, pass_id, 1, 10)

    consumer = AIOKafkaConsumer(
        "sentinel.usage.dlq", bootstrap_servers=stack.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    letters = []
    try:
        async with asyncio.timeout(20):
            while len(letters) < 2:
                fetched = await consumer.getmany(timeout_ms=500)
                letters += [
                    json.loads(m.value)
                    for messages in fetched.values()
                    for m in messages
                    if m.key == pass_id.encode()
                ]
    finally:
        await consumer.stop()
    by_offset = {(d["source_partition"], d["source_offset"]): d for d in letters}
    first = by_offset[(garbage.partition, garbage.offset)]
    assert first["reason"].startswith("not valid JSON")
    second = by_offset[(invalid.partition, invalid.offset)]
    assert second["reason"] == "invalid event"
    assert second["errors"][0]["field"] == "activity_type"
    assert stack.metric('sentinel_dlq_records_total{reason="invalid event"}') >= 1


@pytest.mark.parametrize("per_page", [10, 25, 50, 100])
def test_every_page_size_of_the_seed_is_served(stack: Stack, per_page: int) -> None:
    with stack.client([PROJECT], ["usage:read"]) as http:
        response = http.get(
            f"/v1/projects/{PROJECT}/passes/SP-none/activity", params={"per_page": per_page}
        )
    assert response.status_code == 404  # validated first, then not found
