"""Whatever a producer puts on the topic is either decoded or dead-lettered, with a
reason and its source position; decoding never raises and no record is left out
(issue 11: a record with metadata nested 300 levels deep stalled a partition)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.wire import BATCH_SCHEMA
from sentinel_usage.stream.decode import MAX_DEAD_PAYLOAD_BYTES, SourceRecord, decode_records
from tests.factories import raw_event

VALIDATOR = EventValidator()


def nested(depth: int) -> bytes:
    """JSON text of an object nested `depth` levels (orjson cannot build it from Python
    beyond 254 levels, a producer in another language can)."""
    return b'{"a":' * depth + b"1" + b"}" * depth


def event_with_metadata_text(metadata: bytes) -> bytes:
    text = orjson.dumps(raw_event(metadata={"m": 1}))
    return text.replace(b'"metadata":{"m":1}', b'"metadata":' + metadata)


GARBAGE_ENVELOPE = {"schema": BATCH_SCHEMA, "events": [1, None, "x", [[]]]}
HUGE_STATUS = orjson.dumps(raw_event()).replace(b'"status_code":200', b'"status_code":' + b"9" * 40)
POISON = {
    "metadata 300 levels deep": event_with_metadata_text(nested(300)),
    "metadata 33 levels deep": event_with_metadata_text(nested(33)),
    "nesting beyond orjson's parser": b"[" * 5000 + b"]" * 5000,
    "invalid UTF-8": b'{"project_id": "\xff\xfe"}',
    "lone surrogate": b'{"project_id": "\\ud800"}',
    "an envelope of garbage": orjson.dumps(GARBAGE_ENVELOPE),
    "an envelope whose events are not a list": orjson.dumps({"schema": BATCH_SCHEMA, "events": 7}),
    "unknown envelope schema": orjson.dumps({"schema": "nope/9", "events": []}),
    "integer beyond 64 bits": HUGE_STATUS,
    "huge text value": orjson.dumps(raw_event(user_agent="x" * 900_000)),
    "wrong types": orjson.dumps(raw_event(duration_ms="fast", success="yes", status_code=[200])),
    "empty": b"",
    "null": b"null",
}  # fmt: skip


def record(offset: int, value: bytes | None, partition: int = 1) -> SourceRecord:
    return SourceRecord("sentinel.usage.events", partition, offset, b"SP-1", value)


def test_each_kind_of_poison_is_dead_lettered_and_the_next_record_flows_on() -> None:
    valid = raw_event()
    records = [record(i, value) for i, value in enumerate(POISON.values())]
    records.append(record(len(records), orjson.dumps(valid)))

    batch = decode_records(records, VALIDATOR)

    assert [str(e.event_id) for e in batch.events] == [valid["event_id"]]
    dead_offsets = {d.source.offset for d in batch.dead_letters}
    assert dead_offsets == set(range(len(POISON))), [d.reason for d in batch.dead_letters]
    for letter in batch.dead_letters:
        assert letter.reason
        body = orjson.loads(letter.to_json())
        assert body["source_partition"] == 1
        assert len(letter.to_json()) < MAX_DEAD_PAYLOAD_BYTES + 8 * 1024
    deep = next(d for d in batch.dead_letters if d.source.offset == 0)
    assert deep.errors == [{"field": "metadata", "message": "nests deeper than 32 levels"}]


json_values = st.recursive(
    # (integers orjson can write; beyond 64 bits is in POISON, as text)
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


def mutated_event(data: st.DataObject) -> dict[str, Any]:
    event = raw_event()
    for name in data.draw(st.sets(st.sampled_from(sorted(event)), max_size=4)):
        event[name] = data.draw(json_values)
    return event


@st.composite
def record_values(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "event", "envelope", "deep"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return orjson.dumps(draw(json_values))
    if kind == "event":
        return orjson.dumps(mutated_event(draw(st.data())))
    if kind == "deep":
        return event_with_metadata_text(nested(draw(st.integers(1, 600))))
    events = draw(st.lists(st.one_of(json_values, st.builds(dict)), max_size=5))
    events += [mutated_event(draw(st.data())) for _ in range(draw(st.integers(0, 3)))]
    return orjson.dumps({"schema": BATCH_SCHEMA, "events": events})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(record_values(), min_size=1, max_size=8))
def test_decoding_never_raises_and_accounts_for_every_record(values: list[bytes]) -> None:
    records = [record(i, value) for i, value in enumerate(values)]
    batch = decode_records(records, VALIDATOR)

    events_of = batch.table.column("source_offset").to_pylist()
    for position, value in enumerate(values):
        produced = events_of.count(position)
        letters = [d for d in batch.dead_letters if d.source.offset == position]
        for letter in letters:
            orjson.loads(letter.to_json())
        expected = envelope_size(value)
        if expected is None:  # anything but an envelope: one event, or one dead letter
            assert produced + len(letters) == 1, f"record {position}: {value[:80]!r}"
        else:  # each event of an envelope: valid, or dead-lettered with its index
            assert produced + len(letters) == expected, f"record {position}: {value[:80]!r}"
            assert sorted(d.index for d in letters) == sorted({d.index for d in letters})


def envelope_size(value: bytes) -> int | None:
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if isinstance(document, dict) and document.get("schema") == BATCH_SCHEMA:
        events = document.get("events")
        return len(events) if isinstance(events, list) else None
    return None
