"""Columnar validation gives, row for row, what the per-event validator gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel_usage.core.clock import FixedClock
from sentinel_usage.core.columns import events_table, table_events, validate_events
from sentinel_usage.core.errors import InvalidEventError
from sentinel_usage.core.events import EventValidator, ValidationPolicy
from tests.factories import EVENT_FIELDS, raw_event

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
VALIDATOR = EventValidator(ValidationPolicy(clock=FixedClock(NOW)))


ODD_TIMESTAMPS = ["2026-02-30T10:00:00Z", "2026-11-24T24:00:00Z", "2026-11-24T11:59:60Z",
                  "2026-11-24", "20261124T115900Z"]  # fmt: skip


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """ISO 8601 text around NOW in the forms producers send, and some they should not."""
    at = NOW - timedelta(seconds=draw(st.floats(-600, 91 * 86400)))
    zone = draw(st.sampled_from(["Z", "+00:00", "+05:30", "-08:00", "+14:60", "-23:59", ""]))
    digits = draw(st.sampled_from([0, 1, 2, 3, 4, 6, 7]))
    sep = draw(st.sampled_from(["T", "T", " "]))
    text = at.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if digits:
        text += "." + f"{at.microsecond:06d}{at.microsecond % 10}"[:digits]
    if draw(st.booleans()) and draw(st.booleans()):
        text = draw(st.sampled_from(ODD_TIMESTAMPS))
    return text + zone


anything = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 1000), st.integers(2**62, 2**65),
    st.floats(allow_nan=True), st.text(max_size=12), st.just(""), st.just(" GET "),
    st.just("post"), st.just("10.0.0.1"), st.just(" ::1 "), st.just("2001:DB8::1"),
    st.just("SP-1"), st.just("bad id"), st.just("/v1/items/42?x=1"), st.just("not-a-uuid"),
    st.just("6F1D2C1E-6A39-4D53-9A55-2F8F3C2B7A10"), st.just("api_request"), st.just("error"),
    st.just("token_generation"), st.just({"a": 1}), st.just({}), st.just([1]), st.just(200.0),
    st.just(503), st.just("x" * 1025), st.just("a" * 128), st.just("a" * 129), timestamps(),
)  # fmt: skip
fields = st.sampled_from([*EVENT_FIELDS, "unknown"])


@st.composite
def raw_events(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from([None, [], "text", 3]))
    raw = raw_event(started_at=draw(timestamps()))
    raw.update(draw(st.dictionaries(fields, anything, max_size=3)))
    for name in draw(st.sets(fields, max_size=2)):
        raw.pop(name, None)
    return raw


def per_event(raws: list[Any]) -> tuple[list[Any], list[tuple[int, list[dict[str, str]]]]]:
    valid, rejected = [], []
    for index, raw in enumerate(raws):
        try:
            valid.append(VALIDATOR.validate(raw))
        except InvalidEventError as exc:
            rejected.append((index, exc.errors))
    return valid, rejected


@given(st.lists(raw_events(), max_size=12))
@settings(max_examples=500, deadline=None)
def test_columns_agree_with_the_per_event_validator(raws: list[Any]) -> None:
    batch = validate_events(raws, VALIDATOR)
    valid, rejected = per_event(raws)

    assert [e.model_dump() for e in table_events(batch.table)] == [e.model_dump() for e in valid]
    assert [(index, exc.errors) for index, exc in batch.rejected] == rejected
    rows = batch.table.column("row").to_pylist()
    assert sorted(rows + [index for index, _ in rejected]) == list(range(len(raws)))
    assert rows == sorted(rows)


@given(st.lists(timestamps(), min_size=1, max_size=20))
@settings(max_examples=300, deadline=None)
def test_timestamps_agree_with_the_model(stamps: list[str]) -> None:
    raws = [raw_event(started_at=stamp) for stamp in stamps]
    batch = validate_events(raws, VALIDATOR)
    valid, rejected = per_event(raws)
    assert [e.started_at for e in table_events(batch.table)] == [e.started_at for e in valid]
    assert len(batch.rejected) == len(rejected)


def test_well_formed_events_need_no_model() -> None:
    raws = [raw_event(started_at=(NOW - timedelta(minutes=i)).isoformat()) for i in range(50)]
    raws[3] |= {"status_code": 503, "success": None, "metadata": None}
    del raws[3]["metadata"]
    raws[4] |= {"activity_type": "error", "status_code": None, "client_ip": " 2001:DB8::1 "}
    raws[5] |= {"started_at": "2026-11-24T13:30:00.5+02:00", "http_method": "post"}
    batch = validate_events(raws, VALIDATOR)
    assert batch.rejected == []
    assert table_events(batch.table) == [VALIDATOR.validate(raw) for raw in raws]
    events = table_events(batch.table)
    assert events_table(events).drop_columns(["row"]) == batch.table.drop_columns(["row"])


def test_a_large_batch_keeps_its_order_and_its_bad_rows() -> None:
    # The checks run as one Acero plan, whose source cuts a table into batches of
    # 32,768 rows: the rows must come back in order, and a bad one found in any batch.
    raws = [
        raw_event(started_at=(NOW - timedelta(seconds=i)).isoformat(), status_code=200 + i % 300)
        for i in range(70_000)
    ]
    raws[50_000]["status_code"] = 99
    batch = validate_events(raws, VALIDATOR)
    assert [index for index, _ in batch.rejected] == [50_000]
    kept = [raw for i, raw in enumerate(raws) if i != 50_000]
    assert batch.table.column("event_id").to_pylist() == [raw["event_id"] for raw in kept]
    assert batch.table.column("status_code").to_pylist() == [raw["status_code"] for raw in kept]
