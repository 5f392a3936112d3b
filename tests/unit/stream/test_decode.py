from __future__ import annotations

import orjson

from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.wire import encode_envelopes
from sentinel_usage.stream.decode import SourceRecord, decode_records
from tests.factories import raw_event

VALIDATOR = EventValidator()


def record(offset: int, value: bytes | None, partition: int = 2) -> SourceRecord:
    return SourceRecord("sentinel.usage.events", partition, offset, b"SP-1", value)


def test_valid_events_pass_and_each_bad_one_is_a_dead_letter_with_its_source() -> None:
    good = [VALIDATOR.validate(raw_event()) for _ in range(3)]
    (envelope,) = encode_envelopes(good)
    mixed = orjson.loads(envelope.payload)
    mixed["events"].insert(1, raw_event(status_code=42))
    records = [
        record(10, envelope.payload),
        record(11, b"\xff not json"),
        record(12, orjson.dumps(mixed)),
        record(13, orjson.dumps(raw_event(activity_type="nope"))),
    ]
    batch = decode_records(records, VALIDATOR)

    assert len(batch.events) == 6
    reasons = [(d.source.offset, d.index, d.reason) for d in batch.dead_letters]
    assert reasons == [
        (11, None, reasons[0][2]),
        (12, 1, "invalid event"),
        (13, None, "invalid event"),
    ]
    assert reasons[0][2].startswith("not valid JSON")
    letter = orjson.loads(batch.dead_letters[1].to_json())
    assert letter["source_partition"] == 2
    assert letter["source_offset"] == 12
    assert letter["index"] == 1
    assert letter["key"] == "SP-1"
    assert letter["errors"][0]["field"] == "status_code"
    assert letter["payload"]["status_code"] == 42
