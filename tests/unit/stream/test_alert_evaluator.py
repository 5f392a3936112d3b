from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sentinel_usage.core.aggregate import WindowState
from sentinel_usage.core.alerts import AlertEvent, ErrorRateRule
from sentinel_usage.stream.alerts import ErrorRateEvaluator
from sentinel_usage.stream.windows import UsageWindows
from tests.stream_support import InMemoryWindowStore

MINUTE = timedelta(minutes=1)
T0 = datetime(2026, 11, 24, 12, 0, 30, tzinfo=UTC)


class Harness:
    def __init__(self) -> None:
        self.windows_store = InMemoryWindowStore()
        self.alert_store = InMemoryWindowStore()
        self.published: list[AlertEvent] = []
        self.fail_publish = False
        self.evaluator = self.build()

    def build(self) -> ErrorRateEvaluator:
        async def publish(events: list[AlertEvent]) -> None:
            if self.fail_publish:
                raise ConnectionError("broker down")
            self.published += events

        async def flush() -> None:
            pass

        return ErrorRateEvaluator(
            ErrorRateRule(),
            UsageWindows(self.windows_store),
            MINUTE,
            self.alert_store,
            publish,
            flush,
        )

    def traffic(self, minute: datetime, requests: int, errors: int, pass_id: str = "SP-1") -> None:
        state = WindowState(
            "p", pass_id, minute.replace(second=0), 60, source_partition=2, last_offset=1
        )
        state.aggregate.total_requests = requests
        state.aggregate.error_count = errors
        state.aggregate.success_count = requests - errors
        self.windows_store.put(state.key.encode(), state.to_bytes(), 2)


async def test_fires_once_and_resolves_from_the_trailing_windows() -> None:
    h = Harness()
    for m in range(5):  # 5 windows of 20 requests, 2 errors each: 10% over 100
        h.traffic(T0 - m * MINUTE, 20, 2)
    h.traffic(T0 - 10 * MINUTE, 1000, 0)  # outside the trailing window
    firing = await h.evaluator.evaluate(T0)
    assert [e.state for e in h.published] == ["firing"]
    event = h.published[0]
    assert (event.requests, event.errors, event.error_rate) == (100, 10, 0.1)
    assert [s.pass_id for s in firing] == ["SP-1"]
    assert await h.evaluator.evaluate(T0 + timedelta(seconds=30))
    assert len(h.published) == 1

    later = T0 + 10 * MINUTE  # the errors are out of the trailing window for 5 minutes
    assert await h.evaluator.evaluate(later) == []
    assert [e.state for e in h.published] == ["firing", "resolved"]
    assert h.published[1].alert_id == event.alert_id


@pytest.mark.parametrize(("requests", "errors"), [(100, 4), (5, 3)])
async def test_no_alert_below_the_threshold_or_the_volume(requests: int, errors: int) -> None:
    h = Harness()
    h.traffic(T0, requests, errors)
    assert await h.evaluator.evaluate(T0) == []
    assert h.published == []


async def test_a_failed_publish_stays_in_the_outbox_and_a_restart_fires_nothing_new() -> None:
    h = Harness()
    h.traffic(T0, 100, 50)
    h.fail_publish = True
    with pytest.raises(ConnectionError):
        await h.evaluator.evaluate(T0)
    assert h.published == []
    # a "restarted worker": new evaluator, same (recovered) tables
    h.fail_publish = False
    h.evaluator = h.build()
    await h.evaluator.evaluate(T0 + timedelta(seconds=10))
    assert [e.state for e in h.published] == ["firing"]
    h.evaluator = h.build()
    await h.evaluator.evaluate(T0 + timedelta(seconds=20))
    assert len(h.published) == 1


async def test_quiet_passes_leave_no_alert_state_behind() -> None:
    h = Harness()
    for n in range(50):  # many passes with traffic, none failing
        h.traffic(T0, 30, 0, pass_id=f"SP-{n}")
    h.traffic(T0, 100, 50, pass_id="SP-bad")
    await h.evaluator.evaluate(T0)
    assert [k.split(b"\x1f")[1] for k in h.alert_store.data] == [b"SP-bad"]

    later = T0 + 10 * MINUTE  # resolved: the incident's state goes too
    await h.evaluator.evaluate(later)
    assert [e.state for e in h.published] == ["firing", "resolved"]
    assert h.alert_store.data == {}
