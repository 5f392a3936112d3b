"""The worker's small parts that must never lose or stop anything: the batcher on
a revocation, the periodic guard, the lag metric before the first fetch, the logging."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import faust
import pytest
from aiokafka import TopicPartition

from sentinel_usage.core import topics
from sentinel_usage.core.periodic import PERIODIC_FAILURES, periodic
from sentinel_usage.stream.batcher import SinkBatcher
from sentinel_usage.stream.metrics import CONSUMER_LAG
from sentinel_usage.stream.positions import update_lag
from sentinel_usage.stream.worker import BoundedShutdownWorker


@dataclass
class Message:
    partition: int
    value: bytes


@dataclass
class Taken:
    message: Message


def taken(partition: int, n: int) -> list[Taken]:
    return [Taken(Message(partition, b"x" * 10)) for _ in range(n)]


def test_the_batcher_forgets_what_it_holds_of_revoked_partitions() -> None:
    batcher = SinkBatcher(max_messages=100, max_bytes=10_000)
    assert batcher.add(taken(0, 3) + taken(1, 2) + taken(2, 1), more_waiting=True) == []

    assert batcher.drop({1, 2}) == 3

    batch = batcher.add(taken(0, 1), more_waiting=False)
    assert [t.message.partition for t in batch] == [0, 0, 0, 0]


async def test_a_failing_periodic_task_is_counted_and_runs_again() -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TypeError("unsupported operand type(s) for -: 'NoneType' and 'int'")

    before = PERIODIC_FAILURES.labels(task="flaky")._value.get()
    guarded = periodic("flaky", flaky)
    await guarded()  # raises inside, not out
    await guarded()
    assert calls == 2
    assert PERIODIC_FAILURES.labels(task="flaky")._value.get() == before + 1


@dataclass
class Consumer:
    """What update_lag reads of Faust's consumer (a unit-level stand-in, no Kafka)."""

    highwaters: dict[TopicPartition, int | None]
    _committed_offset: dict[TopicPartition, int]

    def assignment(self) -> set[TopicPartition]:
        return set(self.highwaters)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters[tp]


@dataclass
class App:
    consumer: Any


async def test_lag_skips_partitions_whose_high_water_mark_is_not_known_yet() -> None:
    fetched, unknown = TopicPartition(topics.EVENTS, 7), TopicPartition(topics.EVENTS, 8)
    app = App(Consumer({fetched: 120, unknown: None}, {fetched: 100}))
    await update_lag(app)  # type: ignore[arg-type]
    assert CONSUMER_LAG.labels(partition="7")._value.get() == 20
    with pytest.raises(KeyError):
        CONSUMER_LAG._metrics[("8",)]


def test_a_partition_is_stalled_only_when_the_same_stall_lasts() -> None:
    from sentinel_usage.stream.positions import StallGuard

    guard = StallGuard(after=10.0)
    # records just fetched, not yet handed over: a stall only if nothing moves for 10 s
    assert not guard.check(0, committed=1, highwater=4, waiting=False, now=100.0)
    assert not guard.check(0, committed=1, highwater=4, waiting=False, now=105.0)
    assert guard.check(0, committed=1, highwater=4, waiting=False, now=110.0)

    # progress (the committed offset moved) or the agent busy start the count again
    assert not guard.check(1, committed=None, highwater=2, waiting=False, now=0.0)
    assert not guard.check(1, committed=1, highwater=2, waiting=False, now=11.0)
    assert not guard.check(1, committed=1, highwater=2, waiting=True, now=30.0)
    assert not guard.check(1, committed=1, highwater=2, waiting=False, now=31.0)
    assert guard.check(1, committed=1, highwater=2, waiting=False, now=41.0)

    # caught up, or the partition not fetched yet: never
    assert not guard.check(2, committed=9, highwater=9, waiting=False, now=0.0)
    assert not guard.check(2, committed=9, highwater=9, waiting=False, now=50.0)
    assert not guard.check(3, committed=None, highwater=None, waiting=False, now=0.0)
    assert not guard.check(3, committed=None, highwater=None, waiting=False, now=50.0)


def test_the_worker_keeps_the_root_logger_at_the_configured_level() -> None:
    """Faust's spinner set a WARNING root logger to DEBUG (every library debug call
    then built a record); the worker hangs no spinner."""
    app = faust.App("logging-probe", broker="memory://")
    worker = BoundedShutdownWorker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    root = logging.getLogger()
    before = root.level
    try:
        root.setLevel(logging.WARNING)
        worker.on_setup_root_logger(root, logging.WARNING)
        assert root.level == logging.WARNING
        assert not logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(before)
