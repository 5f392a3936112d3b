"""Each step of UsageSink.process alone, on the real ClickHouse engine: what it takes,
what it gives, and what it leaves in ClickHouse. (The order that makes them exact
under redelivery is tested through `process` in test_sink.py and the e2e suites.)"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

import orjson
from prometheus_client import REGISTRY

from sentinel_usage.analytics.activity import ActivityLogQuery
from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.analytics.rollups import RollupStore
from sentinel_usage.analytics.scope import ProjectScope
from sentinel_usage.analytics.writer import ActivityLogWriter
from sentinel_usage.core.aggregate import WindowKey, WindowState
from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.wire import BATCH_SCHEMA
from sentinel_usage.stream.decode import DeadLetter, SourceRecord
from sentinel_usage.stream.sink import UsageSink
from sentinel_usage.stream.windows import UsageWindows
from tests.factories import raw_event
from tests.stream_support import InMemoryWindowStore

VALIDATOR = EventValidator()


class LookedUp(RollupStore):
    """The rollups, each window key asked of them recorded."""

    def __init__(self, clickhouse: ClickHouse) -> None:
        super().__init__(clickhouse)
        self.asked: list[WindowKey] = []

    def load(self, keys: Sequence[WindowKey]) -> dict[WindowKey, WindowState]:
        self.asked += keys
        return super().load(keys)


class Steps:
    """A sink over the real engine, its dead letters, changelog flushes and rollup
    lookups recorded."""

    def __init__(self, clickhouse: ClickHouse) -> None:
        self.dead: list[DeadLetter] = []
        self.flushes = 0
        self.rollups = LookedUp(clickhouse)

        async def send_dead_letter(dead: DeadLetter) -> None:
            self.dead.append(dead)

        async def flush() -> None:
            self.flushes += 1

        self.sink = UsageSink(
            ActivityLogWriter(clickhouse),
            self.rollups,
            UsageWindows(InMemoryWindowStore()),
            send_dead_letter,
            flush,
            VALIDATOR,
        )


def envelope(offset: int, events: list[dict[str, Any]]) -> SourceRecord:
    payload = orjson.dumps({"schema": BATCH_SCHEMA, "events": events})
    return SourceRecord("sentinel.usage.events", 0, offset, b"k", payload)


def new_pass() -> str:
    return f"SP-{uuid.uuid4().hex[:8]}"


async def test_decode_gives_the_valid_events_and_the_rest_as_dead_letters(
    clickhouse: ClickHouse,
) -> None:
    steps = Steps(clickhouse)
    pass_id = new_pass()
    good = [raw_event(pass_id=pass_id) for _ in range(3)]
    decoded = await steps.sink.decode(
        [envelope(7, [*good, raw_event(pass_id=pass_id, duration_ms=-1)]), envelope(8, [])]
    )
    assert decoded.table.column("event_id").to_pylist() == [e["event_id"] for e in good]
    assert decoded.table.column("source_offset").to_pylist() == [7, 7, 7]
    (dead,) = decoded.dead_letters
    assert (dead.source.offset, dead.index) == (7, 3)
    assert dead.errors[0]["field"] == "duration_ms"
    assert steps.dead == []  # decoding sends nothing


async def test_drop_known_keeps_the_first_of_repeats_and_drops_what_the_log_holds(
    clickhouse: ClickHouse,
) -> None:
    steps = Steps(clickhouse)
    pass_id = new_pass()
    stored, fresh = raw_event(pass_id=pass_id), raw_event(pass_id=pass_id)
    ActivityLogWriter(clickhouse).write([VALIDATOR.validate(stored)])
    again = dict(fresh, endpoint="/v1/other")  # the same identity, other fields
    decoded = await steps.sink.decode([envelope(1, [stored, fresh, again])])
    kept = await steps.sink.drop_known(decoded.table)
    assert kept.column("event_id").to_pylist() == [fresh["event_id"]]
    assert kept.column("endpoint").to_pylist() == [fresh["endpoint"]]  # the first wins


async def test_window_applies_once_per_offset_and_flushes_before_returning(
    clickhouse: ClickHouse,
) -> None:
    steps = Steps(clickhouse)
    pass_id = new_pass()
    events = [raw_event(pass_id=pass_id, status_code=code) for code in (200, 200, 500)]
    decoded = await steps.sink.decode([envelope(5, events)])
    changed = await steps.sink.window(decoded.table)
    # one window of each tier (the minute, its quarter of an hour, its UTC day)
    assert sorted(s.window_seconds for s in changed) == [60, 900, 86_400]
    for state in changed:
        assert (state.aggregate.total_requests, state.aggregate.error_count) == (3, 1)
    assert steps.flushes == 1
    # The same record again (a redelivery) is at or below the window's watermark.
    assert await steps.sink.window(decoded.table) == []


async def test_persist_writes_the_rows_then_their_windows(clickhouse: ClickHouse) -> None:
    steps = Steps(clickhouse)
    pass_id = new_pass()
    decoded = await steps.sink.decode([envelope(3, [raw_event(pass_id=pass_id)] * 2)])
    changed = await steps.sink.window(decoded.table)
    await steps.sink.persist(decoded.table, changed)
    page = ActivityLogQuery(clickhouse).page(ProjectScope("proj-a"), pass_id, 1, 10)
    assert page.total == 1  # the same event twice: one row (the table folds it)...
    stored = RollupStore(clickhouse).load([state.key for state in changed])
    # ...but the windows counted both: dropping repeats is drop_known's job, before.
    assert len(stored) == 3  # each tier's window, in its own table
    assert {state.aggregate.total_requests for state in stored.values()} == {2}


async def test_a_written_batch_counts_each_passs_requests_and_errors_in_its_metrics(
    clickhouse: ClickHouse,
) -> None:
    steps = Steps(clickhouse)
    busy, calm = new_pass(), new_pass()
    events = [
        raw_event(pass_id=busy),
        raw_event(pass_id=busy, status_code=500),
        raw_event(pass_id=busy, activity_type="error", status_code=None),
        raw_event(pass_id=busy, activity_type="token_generation", endpoint="/oauth/token"),
        raw_event(pass_id=calm),
        raw_event(pass_id=calm, status_code=201),
    ]
    assert await steps.sink.process([envelope(7, events)]) == 6

    def sample(name: str, pass_id: str) -> float | None:
        labels = {"project_id": "proj-a", "pass_id": pass_id}
        return REGISTRY.get_sample_value(f"sentinel_pass_{name}_total", labels)

    assert (sample("requests", busy), sample("errors", busy)) == (3, 2)  # not the token
    assert (sample("requests", calm), sample("errors", calm)) == (2, None)


async def test_dead_letter_sends_each_with_its_source(clickhouse: ClickHouse) -> None:
    steps = Steps(clickhouse)
    decoded = await steps.sink.decode(
        [envelope(4, [raw_event(client_ip="nope")]), SourceRecord("t", 0, 9, None, b"{")]
    )
    await steps.sink.dead_letter(decoded)
    assert [(d.source.offset, d.reason.split(":")[0]) for d in steps.dead] == [
        (4, "invalid event"),
        (9, "not valid JSON"),
    ]


async def test_recover_once_writes_the_recovered_windows_after_each_assignment(
    clickhouse: ClickHouse,
) -> None:
    """A previous owner may have flushed a window and died before its rollup write; the
    store recovers it with a partition. Eviction drops windows without writing them, so
    this write is what puts such a window in the rollups."""
    steps = Steps(clickhouse)
    await steps.sink.recover_once()  # the first batch's: nothing recovered yet
    pass_id = new_pass()
    decoded = await steps.sink.decode([envelope(7, [raw_event(pass_id=pass_id)])])
    changed = await steps.sink.window(decoded.table)  # in the store, not in the rollups
    keys = [state.key for state in changed]
    await steps.sink.recover_once()
    assert RollupStore(clickhouse).load(keys) == {}  # no assignment since: no write

    steps.sink.partitions_assigned()
    await steps.sink.recover_once()
    stored = RollupStore(clickhouse).load(keys)
    assert {state.aggregate.total_requests for state in stored.values()} == {1}
    assert len(stored) == 3


async def test_window_looks_up_only_the_windows_the_rollups_may_hold(
    clickhouse: ClickHouse,
) -> None:
    """Windows written before the sink took its partitions are looked up; a window
    nobody wrote is not (stream/rollup_keys.py); one this sink wrote, then evicted,
    is looked up again; and one older than the index's span always is."""
    now = datetime.now(UTC)
    before, new, old = new_pass(), new_pass(), new_pass()
    # A window a previous owner wrote: the same minute for all three tiers.
    steps = Steps(clickhouse)
    decoded = await steps.sink.decode([envelope(1, [raw_event(pass_id=before)])])
    await steps.sink.persist(decoded.table, await steps.sink.window(decoded.table))

    steps = Steps(clickhouse)  # the next owner
    await steps.sink.recover_once()
    long_ago = (now - timedelta(hours=3)).isoformat()
    events = [raw_event(pass_id=p) for p in (before, new)]
    decoded = await steps.sink.decode(
        [envelope(2, events), envelope(3, [raw_event(pass_id=old, started_at=long_ago)])]
    )
    changed = await steps.sink.window(decoded.table)
    asked = {(k.pass_id, k.window_seconds) for k in steps.rollups.asked}
    # `old`'s day is looked up only if it ended before the index's span (two hours)
    day_end = datetime.combine((now - timedelta(hours=3)).date(), time(), UTC) + timedelta(days=1)
    old_day = {(old, 86_400)} if day_end < now - timedelta(hours=2) else set()
    assert asked == {(before, 60), (before, 900), (before, 86_400), (old, 60), (old, 900)} | old_day
    totals = {(s.pass_id, s.window_seconds): s.aggregate.total_requests for s in changed}
    assert {totals[(before, seconds)] for seconds in (60, 900, 86_400)} == {2}
    await steps.sink.persist(decoded.table, changed)

    # Evicted (here by hand, as `_maybe_evict` does past the horizon): looked up again.
    steps.sink.windows.evict([s for s in changed if s.pass_id == new])
    steps.rollups.asked.clear()
    decoded = await steps.sink.decode([envelope(4, [raw_event(pass_id=new)])])
    again = await steps.sink.window(decoded.table)
    assert {k.pass_id for k in steps.rollups.asked} == {new}
    assert {s.aggregate.total_requests for s in again} == {2}
