"""A batch prepared while the one before is being written (stream/pipeline.py), on the
real ClickHouse engine: it sees that batch's events and windows as if it came after it,
and the batches are acked in their order."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.analytics.rollups import RollupStore
from sentinel_usage.analytics.writer import ActivityLogWriter
from sentinel_usage.core.clock import FixedClock
from sentinel_usage.stream.pipeline import SinkPipeline
from sentinel_usage.stream.sink import SinkPolicy
from tests.factories import raw_event
from tests.integration.test_sink_steps import Steps, envelope, new_pass


async def test_an_event_of_the_batch_in_flight_is_known_to_the_next(
    clickhouse: ClickHouse,
) -> None:
    steps = Steps(clickhouse)
    pass_id = new_pass()
    first, again = raw_event(pass_id=pass_id), raw_event(pass_id=pass_id)
    in_flight = await steps.sink.prepare([envelope(1, [first, raw_event(pass_id=pass_id)])])
    # Resent (other fields, the same identity) before the first batch's rows exist.
    nxt = await steps.sink.prepare([envelope(2, [dict(first, endpoint="/v1/x"), again])])

    assert nxt.fresh.column("event_id").to_pylist() == [again["event_id"]]
    await steps.sink.finish(in_flight)
    await steps.sink.finish(nxt)
    stored = RollupStore(clickhouse).load([state.key for state in nxt.changed])
    assert {state.aggregate.total_requests for state in stored.values()} == {3}


class HeldLookups(ActivityLogWriter):
    """The activity log; once `hold` is set, a lookup's answer is read from the log and
    then held until `release` is set (so that a batch may be written in between)."""

    def __init__(self, clickhouse: ClickHouse) -> None:
        super().__init__(clickhouse)
        self.hold = False
        self.answered = threading.Event()
        self.release = threading.Event()

    def existing(self, events: pa.Table) -> pa.Table:
        found = super().existing(events)
        if self.hold:
            self.answered.set()
            self.release.wait(10)
        return found


async def test_an_event_of_a_batch_written_during_the_next_ones_lookup_is_known_to_it(
    clickhouse: ClickHouse,
) -> None:
    """The race of a full-load run (2 events of 1.4 million stored and counted twice): the
    log answered before the batch in flight was inserted, and that batch had left the
    in-flight list by the time the answer came back."""
    steps = Steps(clickhouse)
    writer = steps.sink.writer = HeldLookups(clickhouse)
    pass_id = new_pass()
    first = raw_event(pass_id=pass_id)
    in_flight = await steps.sink.prepare([envelope(1, [first])])
    restamped = dict(first, started_at=datetime.now(UTC).isoformat())

    writer.hold = True
    preparing = asyncio.create_task(steps.sink.prepare([envelope(2, [restamped])]))
    assert await asyncio.to_thread(writer.answered.wait, 10)  # answered without `first`
    await steps.sink.finish(in_flight)
    writer.release.set()
    nxt = await preparing

    assert nxt.fresh.num_rows == 0
    await steps.sink.finish(nxt)
    stored = RollupStore(clickhouse).load([state.key for state in in_flight.changed])
    assert {state.aggregate.total_requests for state in stored.values()} == {1}


async def test_eviction_keeps_the_windows_of_the_batch_in_flight(clickhouse: ClickHouse) -> None:
    """Not yet in the rollups: evicted, a late event would reload them without it."""
    steps = Steps(clickhouse)
    clock = FixedClock(datetime.now(UTC))
    steps.sink.clock = clock
    steps.sink.policy = SinkPolicy(evict_every_seconds=0)
    pass_id = new_pass()
    at = (clock.now() - timedelta(minutes=1)).isoformat()
    in_flight = await steps.sink.prepare([envelope(1, [raw_event(pass_id=pass_id, started_at=at)])])
    keys = {state.key for state in in_flight.changed}

    clock.set(clock.now() + timedelta(days=2))  # every window is past the horizon
    late = raw_event(pass_id=new_pass(), started_at=at)
    await steps.sink.prepare([envelope(2, [late])])  # evicts, but the batch in flight's
    assert keys <= {state.key for state in steps.sink.windows.resident()}

    await steps.sink.finish(in_flight)
    await steps.sink.prepare([envelope(3, [])])
    assert not keys & {state.key for state in steps.sink.windows.resident()}
    stored = RollupStore(clickhouse).load(sorted(keys))
    assert {state.aggregate.total_requests for state in stored.values()} == {1}


class FakeEvent:
    """What the pipeline reads of Faust's event: its message."""

    def __init__(self, record: Any) -> None:
        self.message = record


async def test_batches_are_written_and_acked_in_their_order(clickhouse: ClickHouse) -> None:
    steps = Steps(clickhouse)
    pass_id = new_pass()
    acked: list[int] = []
    writing = 0

    async def ack(batch: Sequence[Any]) -> None:
        acked.extend(event.message.offset for event in batch)

    finish = steps.sink.finish

    async def slow_finish(prepared: Any, again: bool = False) -> int:
        nonlocal writing
        writing += 1
        assert writing == 1  # at most one batch is being written
        await asyncio.sleep(0.05)  # while the next one is prepared
        written = await finish(prepared, again)
        writing -= 1
        return written

    steps.sink.finish = slow_finish  # type: ignore[method-assign]
    pipeline = SinkPipeline(steps.sink, ack)
    for offset in range(5):
        records = [envelope(offset, [raw_event(pass_id=pass_id)])]
        await pipeline.submit([FakeEvent(record) for record in records])
        assert pipeline.busy
    await pipeline.drain()

    assert acked == [0, 1, 2, 3, 4]
    assert not pipeline.busy
    keys = [state.key for state in steps.sink.windows.resident() if state.pass_id == pass_id]
    stored = RollupStore(clickhouse).load(keys)
    assert {state.aggregate.total_requests for state in stored.values()} == {5}


async def test_a_prepare_tried_again_after_an_error_writes_its_batch(
    clickhouse: ClickHouse,
) -> None:
    """An unforeseen error late in `prepare` (here, in eviction): the second try must not
    take the first one's events for a batch in flight."""
    steps = Steps(clickhouse)
    steps.sink.policy = SinkPolicy(evict_every_seconds=0)
    evictable = steps.sink.windows.evictable
    failures = iter([RuntimeError("a bug")])

    def failing_once(now: datetime) -> Any:
        for error in failures:
            raise error
        return evictable(now)

    steps.sink.windows.evictable = failing_once  # type: ignore[method-assign]
    pass_id = new_pass()
    prepared = await steps.sink.prepare_until_done(
        [envelope(1, [raw_event(pass_id=pass_id), raw_event(pass_id=pass_id)])]
    )

    assert prepared.fresh.num_rows == 2
    assert await steps.sink.finish_until_done(prepared) == 2


async def test_the_next_batch_is_decoded_while_one_is_prepared_and_prepares_go_in_order(
    clickhouse: ClickHouse,
) -> None:
    steps = Steps(clickhouse)
    pass_id = new_pass()
    log: list[tuple[str, int]] = []
    decode, prepare_decoded = steps.sink.decode, steps.sink.prepare_decoded

    async def logged_decode(records: Sequence[Any]) -> Any:
        log.append(("decode", records[0].offset))
        return await decode(records)

    async def slow_prepare(decoded: Any, started: float) -> Any:
        (offset,) = set(decoded.table.column("source_offset").to_pylist())
        log.append(("prepare", offset))
        await asyncio.sleep(0.05)  # the next batch's decoding starts meanwhile
        prepared = await prepare_decoded(decoded, started)
        log.append(("prepared", offset))
        return prepared

    steps.sink.decode = logged_decode  # type: ignore[method-assign]
    steps.sink.prepare_decoded = slow_prepare  # type: ignore[method-assign]
    acked: list[int] = []

    async def ack(batch: Sequence[Any]) -> None:
        acked.extend(event.message.offset for event in batch)

    pipeline = SinkPipeline(steps.sink, ack)
    for offset in range(3):
        await pipeline.submit([FakeEvent(envelope(offset, [raw_event(pass_id=pass_id)]))])
    await pipeline.drain()

    assert acked == [0, 1, 2]
    # Two batches are decoded ahead of the one being prepared (SinkPipeline's docstring).
    assert log.index(("decode", 2)) < log.index(("prepared", 0))
    assert [entry for entry in log if entry[0] != "decode"] == [
        ("prepare", 0), ("prepared", 0), ("prepare", 1), ("prepared", 1),
        ("prepare", 2), ("prepared", 2),
    ]  # fmt: skip
