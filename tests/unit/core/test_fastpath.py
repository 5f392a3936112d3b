"""The fast path gives the model's result whenever it gives one, and defers otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sentinel_usage.core.clock import FixedClock
from sentinel_usage.core.events import UsageEvent, ValidationPolicy
from sentinel_usage.core.fastpath import fast_validate
from tests.factories import EVENT_FIELDS, raw_event

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
POLICY = ValidationPolicy(clock=FixedClock(NOW))

anything = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 1000), st.floats(allow_nan=True),
    st.text(max_size=12), st.just(""), st.just(" GET "), st.just("10.0.0.1"), st.just("::1"),
    st.just("SP-1"), st.just("bad id"), st.just("2026-11-24T11:59:00Z"),
    st.just("2026-11-24 11:59"),
    st.just("2031-01-01T00:00:00Z"), st.just("/v1/items/42"), st.just("not-a-uuid"),
    st.just("api_request"), st.just("error"), st.just({"a": 1}), st.just([1]),
)  # fmt: skip
fields = st.sampled_from([*EVENT_FIELDS, "unknown"])


def model(raw: dict[str, Any]) -> UsageEvent | None:
    try:
        return UsageEvent.model_validate(raw, context={"policy": POLICY})
    except ValidationError:
        return None


@given(st.dictionaries(fields, anything, max_size=6), st.sets(fields, max_size=3))
@settings(max_examples=600)
def test_fast_path_agrees_with_the_model(changes: dict[str, Any], removed: set[str]) -> None:
    raw = raw_event(started_at=(NOW - timedelta(minutes=3)).isoformat())
    raw.update(changes)
    for name in removed:
        raw.pop(name, None)
    fast = fast_validate(raw, POLICY, NOW)
    if fast is not None:
        assert fast == model(raw)
        assert fast.model_dump() == model(raw).model_dump()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "overrides",
    [{}, {"status_code": 503, "success": None}, {"activity_type": "error", "status_code": None},
     {"client_ip": " 2001:DB8::1 ", "http_method": "post", "endpoint": "/v1/a/7?x=1"},
     {"user_agent": None, "metadata": None, "started_at": "2026-11-24T13:30:00+02:00"}],
)  # fmt: skip
def test_well_formed_events_take_the_fast_path(overrides: dict[str, Any]) -> None:
    merged = {**raw_event(started_at=(NOW - timedelta(minutes=1)).isoformat()), **overrides}
    raw = {k: v for k, v in merged.items() if v is not None or k == "status_code"}
    fast = fast_validate(raw, POLICY, NOW)
    assert fast is not None
    assert fast == model(raw)
