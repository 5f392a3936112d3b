from __future__ import annotations

import orjson
import pytest

from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.wire import (
    BATCH_SCHEMA,
    MAX_ENVELOPE_BYTES,
    MessageDecodeError,
    decode_message,
    encode_envelopes,
    pack_envelopes,
)
from tests.factories import raw_event

VALIDATOR = EventValidator()


def test_envelopes_group_events_by_pass_in_order() -> None:
    events = [VALIDATOR.validate(raw_event(pass_id=f"p{i % 3}")) for i in range(30)]
    envelopes = list(encode_envelopes(events))
    assert sorted(e.pass_id for e in envelopes) == ["p0", "p1", "p2"]
    for envelope in envelopes:
        decoded = decode_message(envelope.payload)
        assert decoded.envelope
        assert [e["pass_id"] for e in decoded.events] == [envelope.pass_id] * 10
        assert envelope.event_count == 10
        expected = [str(e.event_id) for e in events if e.pass_id == envelope.pass_id]
        assert [e["event_id"] for e in decoded.events] == expected


def test_large_batches_are_split_below_the_message_size_limit() -> None:
    big = {"note": "x" * 8000}
    events = [VALIDATOR.validate(raw_event(metadata=big)) for _ in range(300)]
    envelopes = list(encode_envelopes(events))
    assert len(envelopes) > 1
    assert all(len(e.payload) <= MAX_ENVELOPE_BYTES for e in envelopes)
    assert sum(e.event_count for e in envelopes) == 300
    ids = [ev["event_id"] for e in envelopes for ev in decode_message(e.payload).events]
    assert ids == [str(e.event_id) for e in events]


def test_a_bare_event_object_is_a_message_of_one_event() -> None:
    decoded = decode_message(orjson.dumps(raw_event()))
    assert not decoded.envelope
    assert len(decoded.events) == 1


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty message"),
        (None, "empty message"),
        (b"{not json", "not valid JSON"),
        (b"[1,2]", "must be a JSON object"),
        (orjson.dumps({"schema": "other/9", "events": []}), "unknown envelope schema"),
        (orjson.dumps({"schema": BATCH_SCHEMA, "events": {}}), "must be an array"),
    ],
)
def test_undecodable_messages_say_why(value: bytes | None, reason: str) -> None:
    with pytest.raises(MessageDecodeError, match=reason):
        decode_message(value)


def test_envelopes_of_one_partition_carry_its_passes_in_order() -> None:
    partition_of = {"p0": 0, "p1": 1, "p2": 0, "p3": 1}.__getitem__
    objects = [(f"p{i % 4}", {"n": i, "pass_id": f"p{i % 4}"}) for i in range(40)]
    envelopes = list(pack_envelopes(objects, partition_of))
    assert [e.pass_id for e in envelopes] == ["p0", "p1"]  # keys that hash to 0 and 1
    for envelope in envelopes:
        carried = decode_message(envelope.payload).events
        assert {partition_of(e["pass_id"]) for e in carried} == {partition_of(envelope.pass_id)}
        assert [e["n"] for e in carried] == sorted(e["n"] for e in carried)
    assert sum(e.event_count for e in envelopes) == 40
