from __future__ import annotations

import orjson
import pyarrow as pa

from sentinel_usage.core.columns import table_events, validate_events
from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.wire import (
    BATCH_SCHEMA,
    COLUMNS_SCHEMA,
    WIRE_COLUMNS,
    encode_envelopes,
    pack_columns,
)
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


def test_columnar_batches_and_json_envelopes_decode_alike_in_record_order() -> None:
    """Batch/2 (the ingest's, validated there) is read as it is; batch/1 and bare events
    (anyone's) are validated: the same events come out of either, in record order."""
    raws = [raw_event(pass_id=f"SP-{i % 2}") for i in range(6)]
    checked = validate_events(raws, VALIDATOR)
    columnar = [e.payload for e in pack_columns(checked.table.slice(0, 3))]
    records = [
        *(record(20 + i, payload) for i, payload in enumerate(columnar)),
        record(30, orjson.dumps({"schema": BATCH_SCHEMA, "events": raws[3:5]})),
        record(31, orjson.dumps(raws[5])),
    ]
    batch = decode_records(records, VALIDATOR)
    assert batch.dead_letters == []
    by_offset = batch.table.column("source_offset").to_pylist()
    assert by_offset == sorted(by_offset)
    got = {(e.event_id, e.pass_id) for e in batch.events}
    assert got == {(e.event_id, e.pass_id) for e in table_events(checked.table)}
    assert batch.table.schema.names[:-2] == WIRE_COLUMNS.names


def test_a_columnar_batch_of_other_columns_is_a_dead_letter() -> None:
    odd = pa.table({"event_id": ["x"]})
    sink = pa.BufferOutputStream()
    sink.write(COLUMNS_SCHEMA.encode() + b"\n")
    with pa.ipc.new_stream(sink, odd.schema) as writer:
        writer.write_table(odd)
    truncated = COLUMNS_SCHEMA.encode() + b"\nnot arrow"
    batch = decode_records([record(1, bytes(sink.getvalue())), record(2, truncated)], VALIDATOR)
    assert batch.table.num_rows == 0
    reasons = [d.reason for d in batch.dead_letters]
    assert "batch of other columns" in reasons[0]
    assert "not a readable" in reasons[1]


def test_a_columnar_batch_from_before_an_optional_field_reads_it_as_null() -> None:
    """A field added to the event later: batches packed before it still decode."""
    raws = [raw_event(pass_id="SP-OLD", user_agent="agent/1") for _ in range(3)]
    checked = validate_events(raws, VALIDATOR)
    (payload,) = [e.payload for e in pack_columns(checked.table)]
    older = _repacked(payload, drop="user_agent", reorder=True)
    batch = decode_records([record(1, older)], VALIDATOR)
    assert batch.dead_letters == []
    assert batch.table.column("user_agent").to_pylist() == [None] * 3
    assert (
        batch.table.column("endpoint").to_pylist() == checked.table.column("endpoint").to_pylist()
    )
    required = _repacked(payload, drop="endpoint")
    (dead,) = decode_records([record(2, required)], VALIDATOR).dead_letters
    assert "batch of other columns" in dead.reason


def _repacked(payload: bytes, drop: str, reorder: bool = False) -> bytes:
    prefix = COLUMNS_SCHEMA.encode() + b"\n"
    table = pa.ipc.open_stream(payload[len(prefix) :]).read_all().drop_columns([drop])
    if reorder:
        table = table.select(list(reversed(table.column_names)))
    sink = pa.BufferOutputStream()
    sink.write(prefix)
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())
