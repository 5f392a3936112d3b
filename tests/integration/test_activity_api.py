"""The activity log and its exports through the real app, on the real ClickHouse engine.
Expected rows are computed in Python from the seeded events, not by the query code."""

from __future__ import annotations

import csv
import io
import random
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow.csv as pacsv
import pytest
from fastapi.testclient import TestClient

from sentinel_usage.analytics.writer import ActivityLogWriter
from sentinel_usage.core.events import EventValidator, UsageEvent
from tests.integration.conftest import bearer
from tests.workload import started

PROJECT = "proj-audit"
READ = bearer([PROJECT], ["usage:read"])
EXPORT = bearer([PROJECT], ["usage:export"])
VALIDATOR = EventValidator()
NOW = datetime.now(UTC).replace(microsecond=0)


def clickhouse_order(row: dict[str, Any]) -> tuple[datetime, int, int]:
    """(started_at, event_id) as ClickHouse sorts: UUIDs by their second half first."""
    value = uuid.UUID(str(row["event_id"])).int
    return started(row), value & (2**64 - 1), value >> 64


def seed_events(pass_id: str, n: int, seed: int, spread: timedelta) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    events = []
    for i in range(n):
        kind = rng.choice(["api_request", "api_request", "error", "token_generation"])
        status = None if kind == "error" else rng.choice([200, 201, 404, 500])
        events.append(
            {
                "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "project_id": PROJECT,
                "pass_id": pass_id,
                "client_id": "agent-7",
                "activity_type": kind,
                # some share a millisecond, so ties are broken by event_id
                "started_at": (NOW - spread * rng.random()).isoformat(timespec="milliseconds")
                if i % 10
                else (NOW - timedelta(hours=1)).isoformat(timespec="milliseconds"),
                "endpoint": rng.choice(
                    ["/v1/Items/{id}", "/v1/items_%/search", "/v1/orders", "/oauth/token"]
                ),
                "http_method": rng.choice(["GET", "POST"]),
                "status_code": status,
                "duration_ms": round(rng.uniform(1, 900), 3),
                "client_ip": rng.choice(["203.0.113.9", "2001:db8::7"]),
                "user_agent": rng.choice(["agent/1", '=HYPERLINK("http://x")', "-rm", None]),
                "error_message": 'boom, "quoted"\nline' if status == 500 else None,
                "metadata": {"n": i, "tags": ["a", "b"]},
            }
        )
    return events


def write(clickhouse: Any, events: list[dict[str, Any]]) -> list[UsageEvent]:
    validated = [VALIDATOR.validate(e) for e in events]
    ActivityLogWriter(clickhouse).write(validated)
    return validated


@pytest.fixture(scope="module")
def seeded(clickhouse: Any) -> dict[str, Any]:
    pass_id = f"SP-{uuid.uuid4().hex[:8]}"
    events = seed_events(pass_id, 600, seed=1, spread=timedelta(days=10))
    write(clickhouse, events)
    return {"pass_id": pass_id, "events": events}


def expected(events: list[dict[str, Any]], params: dict[str, str]) -> list[str]:
    def keep(e: dict[str, Any]) -> bool:
        ok = e["activity_type"] != "error" and (e["status_code"] or 500) < 400
        if "activity_type" in params and e["activity_type"] != params["activity_type"]:
            return False
        if params.get("status") == "success" and not ok:
            return False
        if params.get("status") == "failed" and ok:
            return False
        if "endpoint" in params and params["endpoint"].lower() not in e["endpoint"].lower():
            return False
        if "start_date" in params and started(e) < _instant(params["start_date"]):
            return False
        return not ("end_date" in params and started(e) >= _instant(params["end_date"]))

    chosen = sorted((e for e in events if keep(e)), key=clickhouse_order, reverse=True)
    return [e["event_id"] for e in chosen]


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


DAY3 = (NOW - timedelta(days=3)).date().isoformat()
DAY7 = (NOW - timedelta(days=7)).date().isoformat()
FILTERS = [
    {},
    {"activity_type": "api_request"},
    {"activity_type": "token_generation"},
    {"activity_type": "error"},
    {"status": "success"},
    {"status": "failed"},
    {"endpoint": "ITEMS"},
    {"endpoint": "_%"},  # wildcard characters are literal
    {"endpoint": "items_"},
    {"start_date": DAY7},
    {"end_date": DAY3},
    {"start_date": DAY7, "end_date": DAY3},
    {"start_date": (NOW - timedelta(hours=1)).isoformat(), "end_date": NOW.isoformat()},
    {"start_date": (NOW - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S+05:30")},
    {"activity_type": "api_request", "status": "failed", "endpoint": "/v1/", "start_date": DAY7},
]


def walk(client: TestClient, pass_id: str, params: dict[str, str], per_page: int) -> list[dict]:  # type: ignore[type-arg]
    rows: list[dict] = []  # type: ignore[type-arg]
    cursor = None
    while True:
        query = {**params, "per_page": str(per_page), **({"cursor": cursor} if cursor else {})}
        body = client.get(
            f"/v1/projects/{PROJECT}/passes/{pass_id}/activity", params=query, headers=READ
        ).json()
        rows += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return rows


@pytest.mark.parametrize("params", FILTERS, ids=[str(f) for f in FILTERS])
def test_each_filter_alone_and_combined(
    api_client: TestClient, seeded: dict[str, Any], params: dict[str, str]
) -> None:
    pass_id, want = seeded["pass_id"], expected(seeded["events"], params)
    first = api_client.get(
        f"/v1/projects/{PROJECT}/passes/{pass_id}/activity", params=params, headers=READ
    ).json()
    assert first["total"] == len(want)
    assert first["per_page"] == 25
    assert first["page"] == 1
    assert [r["event_id"] for r in first["items"]] == want[:25]
    assert [r["event_id"] for r in walk(api_client, pass_id, params, 100)] == want
    pages = []
    for page in range(1, len(want) // 50 + 2):
        body = api_client.get(
            f"/v1/projects/{PROJECT}/passes/{pass_id}/activity",
            params={**params, "page": page, "per_page": 50},
            headers=READ,
        ).json()
        pages += [r["event_id"] for r in body["items"]]
    assert pages == want


def test_rows_carry_every_field(api_client: TestClient, seeded: dict[str, Any]) -> None:
    pass_id = seeded["pass_id"]
    body = api_client.get(
        f"/v1/projects/{PROJECT}/passes/{pass_id}/activity",
        params={"per_page": 100, "status": "failed", "activity_type": "api_request"},
        headers=READ,
    ).json()
    row = next(r for r in body["items"] if r["status_code"] == 500)
    source = next(e for e in seeded["events"] if e["event_id"] == row["event_id"])
    assert set(row) == {
        "event_id", "activity_type", "started_at", "endpoint", "http_method", "success",
        "status_code", "duration_ms", "client_ip", "user_agent", "error_message", "metadata",
    }  # fmt: skip
    assert row["success"] is False
    assert row["error_message"] == source["error_message"]
    assert row["metadata"] == source["metadata"]
    assert row["duration_ms"] == source["duration_ms"]


def test_keyset_walk_neither_skips_nor_repeats_while_the_log_grows(
    api_client: TestClient, clickhouse: Any
) -> None:
    pass_id = f"SP-{uuid.uuid4().hex[:8]}"
    original = seed_events(pass_id, 120, seed=2, spread=timedelta(days=1))
    write(clickhouse, original)
    url = f"/v1/projects/{PROJECT}/passes/{pass_id}/activity"
    first = api_client.get(url, params={"per_page": 50}, headers=READ).json()
    # newer rows arrive (and an older one) while the reader is on page 1
    write(clickhouse, seed_events(pass_id, 30, seed=3, spread=timedelta(seconds=5)))
    seen = [r["event_id"] for r in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        body = api_client.get(url, params={"per_page": 50, "cursor": cursor}, headers=READ).json()
        seen += [r["event_id"] for r in body["items"]]
        cursor = body["next_cursor"]
    want = expected(original, {})
    assert [i for i in seen if i in set(want)] == want
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize(
    ("params", "param", "needle"),
    [
        (
            {"activity_type": "login"},
            "activity_type",
            "'api_request', 'token_generation' or 'error'",
        ),
        ({"status": "maybe"}, "status", "'success' or 'failed'"),
        ({"per_page": "7"}, "per_page", "10, 25, 50 or 100"),
        ({"page": "0"}, "page", "greater than or equal to 1"),
        ({"start_date": "last tuesday"}, "start_date", "not an ISO 8601 date"),
        ({"end_date": "2026-13-01"}, "end_date", "not an ISO 8601 date"),
        ({"start_date": "2026-11-24", "end_date": "2026-11-23"}, "start_date", "after end_date"),
        ({"cursor": "garbage!"}, "cursor", "cursor is not valid"),
        ({"start_date": ""}, "start_date", "not an ISO 8601"),
        ({"start_date": "2026-11-24T09:30:00"}, "start_date", "with a zone"),
        ({"end_date": "2026-11-24T09:30"}, "end_date", "with a zone"),
        ({"cursor": f"a.1.{'0' * 32}.1"}, "cursor", "is for exports"),
        ({"cursor": f"d.1.{'0' * 32}\n"}, "cursor", "cursor is not valid"),
    ],
)
def test_invalid_parameters_are_422_naming_the_parameter(
    api_client: TestClient, seeded: dict[str, Any], params: dict[str, str], param: str, needle: str
) -> None:
    response = api_client.get(
        f"/v1/projects/{PROJECT}/passes/{seeded['pass_id']}/activity", params=params, headers=READ
    )
    assert response.status_code == 422
    (error,) = [e for e in response.json()["detail"] if e["loc"][-1] == param]
    assert needle in error["msg"]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"),  # overflow UTC
        ("1000-01-01", "9999-12-31"),  # outside DateTime64(3)
        ("2000-01-01t00:00:00z", "2999-01-01T00:00:00.123456789+23:59"),
    ],
)
def test_any_rfc3339_bound_is_answered_even_beyond_what_storage_holds(
    api_client: TestClient, seeded: dict[str, Any], start: str, end: str
) -> None:
    """Schema-valid dates of any year: the whole log, not a 500 (year 1 was one)."""
    params = {"start_date": start, "end_date": end}
    page = api_client.get(
        f"/v1/projects/{PROJECT}/passes/{seeded['pass_id']}/activity", params=params, headers=READ
    )
    assert page.status_code == 200, page.text
    assert page.json()["total"] == len(seeded["events"])
    batch = export(api_client, seeded["pass_id"], **params)
    assert batch.status_code == 200, batch.text
    assert batch.headers["x-total-count"] == str(len(seeded["events"]))


# -- exports -------------------------------------------------------------------


def export(client: TestClient, pass_id: str, **params: str) -> Any:
    return client.get(
        f"/v1/projects/{PROJECT}/passes/{pass_id}/activity/export", params=params, headers=EXPORT
    )


@pytest.fixture(scope="module")
def big_pass(clickhouse: Any) -> dict[str, Any]:
    pass_id = f"SP-big-{uuid.uuid4().hex[:6]}"
    events = seed_events(pass_id, 25_000, seed=9, spread=timedelta(days=20))
    write(clickhouse, events)
    return {"pass_id": pass_id, "events": events}


def test_three_batches_cover_25000_rows_exactly_once(
    api_client: TestClient, big_pass: dict[str, Any], clickhouse: Any
) -> None:
    pass_id, events = big_pass["pass_id"], big_pass["events"]
    ids: list[str] = []
    cursor = None
    batches = 0
    while True:
        response = export(
            api_client, pass_id, format="csv", **({"cursor": cursor} if cursor else {})
        )
        assert response.status_code == 200
        assert response.headers["x-total-count"] == "25000"
        rows = list(csv.DictReader(io.StringIO(response.text)))
        ids += [r["event_id"] for r in rows]
        batches += 1
        if batches == 1:
            # rows arriving mid-export (older and newer) must not appear in later batches
            write(clickhouse, seed_events(pass_id, 50, seed=10, spread=timedelta(days=20)))
        if response.headers["x-export-truncated"] == "false":
            assert "x-next-cursor" not in response.headers
            break
        assert len(rows) == 10_000
        cursor = response.headers["x-next-cursor"]
    assert batches == 3
    assert len(ids) == 25_000
    assert ids == [e["event_id"] for e in sorted(events, key=clickhouse_order)]


def test_an_export_of_10001_rows_says_it_is_truncated(
    api_client: TestClient, clickhouse: Any
) -> None:
    pass_id = f"SP-10001-{uuid.uuid4().hex[:6]}"
    write(clickhouse, seed_events(pass_id, 10_001, seed=12, spread=timedelta(days=3)))
    response = export(api_client, pass_id, format="jsonl")
    assert response.headers["x-total-count"] == "10001"
    assert response.headers["x-export-truncated"] == "true"
    assert len(response.text.splitlines()) == 10_000
    rest = export(api_client, pass_id, format="jsonl", cursor=response.headers["x-next-cursor"])
    assert len(rest.text.splitlines()) == 1
    assert rest.headers["x-export-truncated"] == "false"


def test_a_crafted_cursor_cannot_widen_the_snapshot(
    api_client: TestClient, seeded: dict[str, Any]
) -> None:
    """A cursor is plain text; one naming a snapshot in the future is held to now."""
    response = export(api_client, seeded["pass_id"], cursor=f"a.0.{'0' * 32}.9999999999999")
    assert response.status_code == 200
    snapshot = datetime.fromisoformat(response.headers["x-export-snapshot"])
    assert snapshot <= datetime.now(UTC)


def test_csv_json_and_jsonl_hold_the_same_rows(
    api_client: TestClient, seeded: dict[str, Any]
) -> None:
    pass_id = seeded["pass_id"]
    params = {"status": "failed"}
    csv_response = export(api_client, pass_id, format="csv", **params)
    jsonl_response = export(api_client, pass_id, format="jsonl", **params)
    json_response = export(api_client, pass_id, format="json", **params)
    stamp = r"\d{8}T\d{6}Z"
    for response, fmt, media in (
        (csv_response, "csv", "text/csv; charset=utf-8"),
        (jsonl_response, "jsonl", "application/x-ndjson"),
        (json_response, "json", "application/json"),
    ):
        assert response.headers["content-type"] == media
        disposition = response.headers["content-disposition"]
        assert disposition.startswith(f'attachment; filename="sentinel-pass-activity-{pass_id}-')
        assert re.search(rf"-{stamp}\.{fmt}\"$", disposition), disposition

    jsonl = [orjson.loads(line) for line in jsonl_response.text.splitlines()]
    assert json_response.json() == jsonl
    assert [r["event_id"] for r in jsonl] == list(reversed(expected(seeded["events"], params)))

    parsed = list(csv.DictReader(io.StringIO(csv_response.text, newline="")))
    assert len(parsed) == len(jsonl)
    for row, source in zip(parsed, jsonl, strict=True):
        expected_row = {
            k: ("" if v is None else orjson.dumps(v).decode() if k == "metadata"
                else ("true" if v else "false") if isinstance(v, bool) else str(v))
            for k, v in source.items()
        }  # fmt: skip
        for column in ("user_agent", "endpoint", "error_message"):
            if expected_row[column][:1] in ("=", "+", "-", "@", "\t", "\r"):
                expected_row[column] = "'" + expected_row[column]
        assert row == expected_row

    table = pacsv.read_csv(io.BytesIO(csv_response.content)).to_pylist()
    assert [str(r["event_id"]) for r in table] == [r["event_id"] for r in jsonl]
    assert [r["status_code"] for r in table] == [r["status_code"] for r in jsonl]
    assert [orjson.loads(r["metadata"]) for r in table] == [r["metadata"] for r in jsonl]


def test_formula_cells_are_neutralised_in_csv_only(
    api_client: TestClient, seeded: dict[str, Any]
) -> None:
    pass_id = seeded["pass_id"]
    csv_rows = list(csv.DictReader(io.StringIO(export(api_client, pass_id, format="csv").text)))
    json_rows = export(api_client, pass_id, format="json").json()
    hyperlink = '=HYPERLINK("http://x")'
    assert any(r["user_agent"] == hyperlink for r in json_rows)
    assert not any(r["user_agent"].startswith(("=", "+", "-", "@")) for r in csv_rows)
    assert any(r["user_agent"] == "'" + hyperlink for r in csv_rows)
    assert any(r["user_agent"] == "'-rm" for r in csv_rows)


def test_every_export_is_in_the_audit_trail(api_client: TestClient, seeded: dict[str, Any]) -> None:
    pass_id = seeded["pass_id"]
    response = export(api_client, pass_id, format="json", endpoint="orders", status="success")
    trail = api_client.get(f"/v1/projects/{PROJECT}/exports", headers=EXPORT).json()
    latest = trail["items"][0]
    assert latest["pass_id"] == pass_id
    assert latest["subject"] == "auditor-1"
    assert latest["format"] == "json"
    assert latest["filters"] == {"endpoint": "orders", "status": "success"}
    assert latest["row_count"] == len(response.json())
    assert latest["total_count"] == int(response.headers["x-total-count"])
    assert latest["truncated"] is False
    assert trail["total"] >= 1


# -- isolation -------------------------------------------------------------------


def test_every_route_is_404_for_another_project_and_leaks_nothing(
    api_client: TestClient, seeded: dict[str, Any]
) -> None:
    pass_id = seeded["pass_id"]
    stranger = bearer(["other"], ["usage:read", "usage:export", "events:write", "passes:read"])
    routes = [
        f"/v1/projects/{PROJECT}/passes/{pass_id}/activity",
        f"/v1/projects/{PROJECT}/passes/{pass_id}/activity/export",
        f"/v1/projects/{PROJECT}/passes/{pass_id}/usage",
        f"/v1/projects/{PROJECT}/passes/{pass_id}/overview",
        f"/v1/projects/{PROJECT}/passes",
        f"/v1/projects/{PROJECT}/exports",
        f"/v1/projects/{PROJECT}/passes/{pass_id}/audit",
    ]
    for route in routes:
        response = api_client.get(route, headers=stranger)
        assert response.status_code == 404, route
        assert response.json() == {"detail": "not found"}
        assert not {"x-total-count", "x-next-cursor", "content-disposition"} & set(response.headers)
        # the same pass id under the stranger's own project does not exist either
        own = api_client.get(route.replace(PROJECT, "other"), headers=stranger)
        assert own.status_code in (200, 404)
        if own.status_code == 200:
            assert pass_id not in own.text
    assert api_client.get(routes[0]).status_code == 401
    assert api_client.get(routes[1], headers=READ).status_code == 403  # export needs usage:export
    assert api_client.get(routes[0], headers=EXPORT).status_code == 403
