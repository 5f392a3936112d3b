"""JSON envelopes read as columns (pyarrow.json) decode exactly as decoded object by object."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel_usage.core.wire import BATCH_SCHEMA, read_json_envelopes
from sentinel_usage.stream.decode import DecodedBatch, SourceRecord, decode_records
from tests.factories import raw_event
from tests.unit.core.test_columns import NOW, VALIDATOR, raw_events


def compact(document: Any) -> bytes:
    # json, not orjson: it writes what orjson refuses to (NaN, integers beyond 64 bits),
    # as a producer may.
    return json.dumps(document, separators=(",", ":")).encode()


def envelope(events: list[Any]) -> bytes:
    return compact({"schema": BATCH_SCHEMA, "events": events})


def plain(event: Any, keep_metadata: bool) -> Any:
    """Metadata with fields does not read as columns: most events here have none."""
    if keep_metadata or not isinstance(event, dict):
        return event
    return {name: value for name, value in event.items() if name != "metadata"}


def event(**overrides: Any) -> dict[str, Any]:
    """A valid event at the validator's clock, without metadata."""
    started_at = (NOW - timedelta(minutes=1)).isoformat()
    return raw_event(**{"started_at": started_at, "metadata": ..., **overrides})


events = st.builds(plain, raw_events(), st.integers(0, 4).map(lambda n: n == 0))
# Envelopes of valid events only (read as columns, unless another message spoils the
# read) and of any events (a row the checks refuse sends its message to the objects).
envelopes = st.one_of(
    st.lists(st.builds(event, pass_id=st.sampled_from(["SP-1", "SP-2"])), max_size=6),
    st.lists(events, max_size=6),
).map(lambda events: envelope(events))


def by_objects(value: bytes) -> bytes:
    """The same message, in a form the columnar reader leaves to the object path."""
    return b" " + value


def records(values: list[bytes]) -> list[SourceRecord]:
    return [
        SourceRecord("sentinel.usage.events", i % 3, 100 + i, b"SP-1", value)
        for i, value in enumerate(values)
    ]


def outcome(batch: DecodedBatch) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    letters = [
        (
            _WHERE.sub("", d.reason),
            d.source.partition,
            d.source.offset,
            d.index,
            d.errors,
            d.payload,
        )
        for d in batch.dead_letters
    ]
    return batch.table.to_pylist(), letters


# Where in the text orjson found an error: one further for the object path's copy.
_WHERE = re.compile(r"line \d+ column \d+ \(char \d+\)")


# Whole messages besides envelopes of generated events: bare events, other forms of
# envelope, explicit nulls, and what only one of the two readers would take.
odd_messages = st.sampled_from(
    [
        compact(raw_event()),
        envelope([]),
        compact({"schema": "other/1", "events": [raw_event()]}),
        compact({"schema": BATCH_SCHEMA, "events": None}),
        compact({"schema": BATCH_SCHEMA, "events": [raw_event()], "extra": 1}),
        envelope([{**raw_event(), "metadata": None}]),
        envelope([{**raw_event(), "metadata": {"k": [1, {"x": None}]}}]),
        envelope([raw_event(duration_ms=float("nan"))]),
        envelope([raw_event()]) + envelope([raw_event()]),
        envelope([raw_event()])[:-1] + b',"pass_id":"SP-2"}]}',  # a repeated key
        envelope([raw_event()]).replace(b'"events":', b'"events":\n'),
        envelope([raw_event(pass_id="SP-\\ud800")]).replace(b"\\\\ud800", b"\\ud800"),
        b"\xff not json",
    ]
)


@given(
    st.lists(
        st.one_of(envelopes, odd_messages),
        min_size=1,
        max_size=5,
    )
)
@settings(max_examples=400, deadline=None)
def test_columnar_reading_agrees_with_the_object_path(values: list[bytes]) -> None:
    fast = decode_records(records(values), VALIDATOR)
    slow = decode_records(records([by_objects(value) for value in values]), VALIDATOR)

    fast_rows, fast_letters = outcome(fast)
    slow_rows, slow_letters = outcome(slow)
    assert fast_rows == slow_rows
    # A message's own dead letter quotes it as it came.
    assert [letter[:5] for letter in fast_letters] == [letter[:5] for letter in slow_letters]


def test_our_producers_envelopes_are_read_as_columns() -> None:
    values: list[bytes | None] = [
        envelope([event(metadata={}), event()]),
        compact(raw_event()),
        None,
        envelope([event()]),
    ]
    read = read_json_envelopes(values)

    assert read.messages == [0, 3]
    assert read.counts.tolist() == [2, 1]
    assert len(read.events) == 3
    assert not read.unsure.any()


def test_one_message_that_does_not_read_as_columns_leaves_them_all_to_the_object_path() -> None:
    values: list[bytes | None] = [
        envelope([event()]),
        envelope([event(unknown=1)]),
    ]
    read = read_json_envelopes(values)

    assert read.messages == []
    assert read.events.type == pa.array([], read.events.type).type


def test_an_explicit_null_metadata_is_not_taken_for_an_absent_one() -> None:
    read = read_json_envelopes([envelope([event(), event(metadata=None)]), envelope([event()])])

    assert read.unsure.tolist() == [True, True, False]
    batch = decode_records(records([envelope([event(metadata=None)])]), VALIDATOR)
    assert batch.table.num_rows == 0
    assert batch.dead_letters[0].errors[0]["field"] == "metadata"
