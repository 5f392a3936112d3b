from __future__ import annotations

from datetime import UTC, datetime, timedelta
from random import Random

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from sentinel_usage.core.aggregate import (
    UsageAggregate,
    WindowState,
    add_table,
    distinct,
    distinct_counts,
)
from sentinel_usage.core.clock import FixedClock
from sentinel_usage.core.columns import events_table
from sentinel_usage.core.events import EventValidator, UsageEvent, ValidationPolicy
from tests.factories import raw_event

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
VALIDATOR = EventValidator(ValidationPolicy(clock=FixedClock(NOW)))


def event(
    kind: str = "api_request", status: int | None = 200, ms: float = 10.0, **kw: object
) -> UsageEvent:
    return VALIDATOR.validate(
        raw_event(
            activity_type=kind,
            status_code=status,
            duration_ms=ms,
            started_at=(NOW - timedelta(minutes=1)).isoformat(),
            **kw,
        )
    )


def aggregate_of(events: list[UsageEvent]) -> UsageAggregate:
    agg = UsageAggregate()
    for e in events:
        agg.add(e)
    return agg


def test_the_usage_tab_definitions() -> None:
    agg = aggregate_of(
        [
            event(ms=100, endpoint="/v1/a/1"),
            event(status=404, ms=300, endpoint="/v1/a/2"),
            event(kind="error", status=None, ms=50, endpoint="/v1/b"),
            event(kind="token_generation", status=200, ms=5000, endpoint="/oauth/token"),
            event(kind="token_generation", status=401, ms=7000, endpoint="/oauth/token"),
        ]
    )
    assert (agg.total_requests, agg.success_count, agg.error_count) == (3, 1, 2)
    assert (agg.token_generations, agg.token_failures) == (2, 1)
    assert agg.avg_latency_ms == 150.0  # requests only
    assert agg.success_rate == 1 / 3
    assert agg.error_rate == 2 / 3
    assert agg.unique_endpoints == 2  # /v1/a/{id} and /v1/b
    # rank floor(0.95 * (3 - 1)) = 1 of [50, 100, 300]
    assert agg.p95_latency_ms is not None
    assert abs(agg.p95_latency_ms - 100) <= 1


def test_no_requests_means_no_rates() -> None:
    agg = aggregate_of([event(kind="token_generation")])
    assert agg.total_requests == 0
    assert agg.success_rate is None
    assert agg.error_rate is None
    assert agg.avg_latency_ms is None
    assert agg.p95_latency_ms is None


kinds = st.sampled_from(["api_request", "error", "token_generation"])
statuses = st.sampled_from([200, 201, 302, 400, 404, 500, 503])
event_specs = st.lists(
    st.tuples(kinds, statuses, st.floats(0, 10_000), st.sampled_from(["/a", "/b/1", "/c"])),
    max_size=30,
)


@given(event_specs, event_specs)
def test_merge_equals_aggregating_everything(left: list, right: list) -> None:  # type: ignore[type-arg]
    def build(specs: list) -> list[UsageEvent]:  # type: ignore[type-arg]
        return [
            event(kind=k, status=None if k == "error" else s, ms=ms, endpoint=ep)
            for k, s, ms, ep in specs
        ]

    a, b = build(left), build(right)
    merged = aggregate_of(a).merge(aggregate_of(b))
    whole = aggregate_of(a + b)
    assert merged.to_state() == {**whole.to_state(), "ls": merged.to_state()["ls"]}
    assert abs(merged.latency_sum_ms - whole.latency_sum_ms) < 1e-6


def test_window_state_round_trips() -> None:
    state = WindowState("p", "SP-1", NOW, 60, aggregate_of([event(), event(status=500)]), 3, 42)
    again = WindowState.from_bytes(state.to_bytes())
    assert again == state
    assert again.key.encode() == state.key.encode()


@given(event_specs, st.integers(1, 4), st.randoms(use_true_random=False))
def test_a_batch_added_at_once_equals_its_events_added_one_by_one(
    specs: list,
    groups: int,
    rng: Random,  # type: ignore[type-arg]
) -> None:
    """The columnar add (the worker's) and the per-event add agree, group by group."""
    events = [
        event(kind=k, status=None if k == "error" else s, ms=ms, endpoint=ep)
        for k, s, ms, ep in specs
    ]
    assignment = [rng.randrange(groups) for _ in events]
    at_once = [UsageAggregate() for _ in range(groups)]
    add_table(at_once, np.array(assignment, dtype=np.int64), events_table(events))
    one_by_one = [aggregate_of([e for e, g in zip(events, assignment, strict=True) if g == k])
                  for k in range(groups)]  # fmt: skip
    for batch, single in zip(at_once, one_by_one, strict=True):
        assert batch.to_state() == {**single.to_state(), "ls": batch.to_state()["ls"]}
        assert abs(batch.latency_sum_ms - single.latency_sum_ms) < 1e-6


@given(st.lists(st.integers(0, 300), max_size=400), st.integers(0, 2000))
def test_distinct_agrees_with_numpy_unique(values: list[int], slack: int) -> None:
    # Both branches: a table of slots (bound near the length) and np.unique (far above it).
    array = np.array(values, dtype=np.int64)
    bound = (max(values) + 1 if values else 0) + slack
    found, inverse = distinct(array, bound)
    unique, unique_inverse = np.unique(array, return_inverse=True)
    assert found.tolist() == unique.tolist()
    assert inverse.reshape(-1).tolist() == unique_inverse.reshape(-1).tolist()
    counted, counts = distinct_counts(array, bound)
    unique, unique_counts = np.unique(array, return_counts=True)
    assert (counted.tolist(), counts.tolist()) == (unique.tolist(), unique_counts.tolist())
