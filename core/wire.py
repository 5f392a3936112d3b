"""The Kafka message format of `sentinel.usage.events`.

A message is one of:
- a columnar batch (`sentinel.usage.batch/2`): the line `sentinel.usage.batch/2`, then
  an Arrow IPC stream of events already validated and normalised (core.columns'
  EVENT_SCHEMA without `row`). Only our HTTP ingest writes these; the worker reads them
  straight into its columns, without validating them again;
- a JSON batch envelope, `{"schema": "sentinel.usage.batch/1", "events": [...]}`,
  carrying many events (the gateway's and third-party producers'; one Kafka message per
  event tops out near 6.7k events/s in Faust);
- one bare event object, as a third-party producer may send it.
The worker validates the events of the last two, as they come from anyone; envelopes
in the compact form our producers write are read into columns by pyarrow.json first
(`read_json_envelopes`), and decoded as objects only when that read is not exact.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final, NamedTuple, cast

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from sentinel_usage.core.columns import EVENT_SCHEMA, JSON_EVENT, OPTIONAL_FIELDS
from sentinel_usage.core.errors import InvalidRecordError
from sentinel_usage.core.events import UsageEvent

BATCH_SCHEMA: Final = "sentinel.usage.batch/1"
COLUMNS_SCHEMA: Final = "sentinel.usage.batch/2"
_COLUMNS_PREFIX: Final = COLUMNS_SCHEMA.encode() + b"\n"
# What a columnar batch carries: the validated form, without the input's row numbers.
WIRE_COLUMNS: Final = EVENT_SCHEMA.remove(EVENT_SCHEMA.get_field_index("row"))
# Kafka's default message.max.bytes is 1 MiB; stay well below it.
MAX_ENVELOPE_BYTES: Final = 900 * 1024
MAX_ENVELOPE_EVENTS: Final = 2_000


class Envelope(NamedTuple):
    # The message key: the envelope's pass (or, for an envelope of several
    # passes of one partition, its first pass: every one of them hashes there).
    pass_id: str
    payload: bytes
    event_count: int


class MessageDecodeError(InvalidRecordError, ValueError):
    """A message that is not JSON, or not an event nor an envelope: dead-letter it."""


def encode_envelopes(events: Sequence[UsageEvent]) -> Iterator[Envelope]:
    """Pack events into envelope messages, each of one pass and bounded in
    size, in the order the events came (per pass)."""
    return pack_envelopes((event.pass_id, event.to_wire()) for event in events)


def pack_envelopes(
    objects: Iterable[tuple[str, dict[str, Any]]],
    partition_of: Callable[[str], int] | None = None,
) -> Iterator[Envelope]:
    """Envelopes of JSON-ready event objects, given with their pass ids: one pass
    per envelope, or, with `partition_of` (the partition a message keyed by a
    pass goes to), the passes of one partition together. Either way every event
    of a pass is in its pass's partition, in order (what the windows rely on),
    and a request of many passes makes a few large messages, not many small ones.
    """
    groups: dict[object, tuple[str, list[dict[str, Any]]]] = {}
    group_of: dict[str, object] = {}
    for pass_id, wire in objects:
        group = group_of.get(pass_id)
        if group is None:
            group = group_of[pass_id] = pass_id if partition_of is None else partition_of(pass_id)
        entry = groups.get(group)
        if entry is None:
            groups[group] = (pass_id, [wire])
        else:
            entry[1].append(wire)
    for key, wires in groups.values():
        yield from _chunks(key, wires)


def _chunks(pass_id: str, wires: list[dict[str, Any]]) -> Iterator[Envelope]:
    def encode(start: int, count: int) -> tuple[str, bytes]:
        chunk = wires[start : start + count]
        return pass_id, orjson.dumps({"schema": BATCH_SCHEMA, "events": chunk})

    return _bounded(len(wires), encode)


def _bounded(rows: int, encode: Callable[[int, int], tuple[str, bytes]]) -> Iterator[Envelope]:
    """Envelopes of `rows` rows in order, `encode(start, count)` giving each one's key and
    payload: at most MAX_ENVELOPE_EVENTS rows, halved until the payload is within
    MAX_ENVELOPE_BYTES (a single row goes whatever its size)."""
    start, step = 0, MAX_ENVELOPE_EVENTS
    while start < rows:
        count = min(step, rows - start)
        key, payload = encode(start, count)
        if len(payload) > MAX_ENVELOPE_BYTES and count > 1:
            step = max(1, count // 2)
            continue
        yield Envelope(key, payload, count)
        start += count
        step = MAX_ENVELOPE_EVENTS


def pack_columns(
    table: pa.Table, partition_of: Callable[[str], int] | None = None
) -> Iterator[Envelope]:
    """Columnar batches of validated events (WIRE_COLUMNS), grouped as `pack_envelopes`
    groups (one pass each, or with `partition_of` one partition each), in input order
    within a group, each within MAX_ENVELOPE_EVENTS and MAX_ENVELOPE_BYTES."""
    table = table.select(WIRE_COLUMNS.names)
    if table.num_rows == 0:
        return
    passes = pc.dictionary_encode(table.column("pass_id")).combine_chunks()
    groups = passes.indices.to_numpy()  # numbered by first appearance, as passes are
    if partition_of is not None:
        partitions = np.array([partition_of(name) for name in passes.dictionary.to_pylist()])
        _, first, groups = np.unique(partitions[groups], return_index=True, return_inverse=True)
        groups = np.argsort(np.argsort(first))[groups]
    # One take of the rows in group order, then zero-copy slices: a filter a group
    # costs a column's copy each (a quarter of a request's packing, four partitions).
    order = np.argsort(groups, kind="stable")
    grouped = table.take(pa.array(order))
    bounds = [0, *(np.flatnonzero(np.diff(groups[order])) + 1).tolist(), table.num_rows]
    for start, end in itertools.pairwise(bounds):
        yield from _column_chunks(grouped.slice(start, end - start))


def _column_chunks(rows: pa.Table) -> Iterator[Envelope]:
    def encode(start: int, count: int) -> tuple[str, bytes]:
        chunk = rows.slice(start, count)
        return chunk.column("pass_id")[0].as_py(), _columns_payload(chunk)

    return _bounded(rows.num_rows, encode)


def _columns_payload(chunk: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    sink.write(_COLUMNS_PREFIX)
    with pa.ipc.new_stream(sink, WIRE_COLUMNS) as writer:
        writer.write_table(chunk.combine_chunks())
    return bytes(sink.getvalue())


class DecodedMessage(NamedTuple):
    events: list[Any]  # raw event objects, to validate
    envelope: bool
    columns: pa.Table | None = None  # a columnar batch: validated events, WIRE_COLUMNS


def decode_message(value: bytes | None) -> DecodedMessage:
    """The raw event objects of one message (validate each one separately)."""
    if not value:
        raise MessageDecodeError("empty message")
    if value.startswith(_COLUMNS_PREFIX):
        return DecodedMessage([], envelope=True, columns=_read_columns(value))
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MessageDecodeError(f"not valid JSON: {exc}") from None
    if isinstance(document, dict) and "events" in document:
        schema = document.get("schema")
        if schema != BATCH_SCHEMA:
            raise MessageDecodeError(f"unknown envelope schema {schema!r}; expected {BATCH_SCHEMA}")
        events = document["events"]
        if not isinstance(events, list):
            raise MessageDecodeError("envelope 'events' must be an array")
        return DecodedMessage(events, envelope=True)
    if isinstance(document, dict):
        return DecodedMessage([document], envelope=False)
    raise MessageDecodeError("a message must be a JSON object (an event or a batch envelope)")


class JsonEnvelopes(NamedTuple):
    messages: list[int]  # the messages read (indices of the values given)
    events: pa.StructArray  # core.columns.JSON_EVENT: their events, in order
    counts: np.ndarray  # per message read, its number of events
    # Per event: its metadata read as null, in a message holding an explicit null
    # somewhere. Arrow reads an absent field and a null alike; the model refuses a null
    # metadata: such an event must be decoded as an object to be told apart.
    unsure: np.ndarray


_JSON_BLOCK_BYTES: Final = 1024 * 1024
_JSON_PREFIX: Final = b'{"schema":"' + BATCH_SCHEMA.encode() + b'"'
_EMPTY_EVENTS: Final = pa.array([], JSON_EVENT)
_JSON_ENVELOPES: Final = pa.schema([("schema", pa.string()), ("events", pa.list_(JSON_EVENT))])


def read_json_envelopes(values: Sequence[bytes | None]) -> JsonEnvelopes:
    """The events of the JSON batch envelopes among `values`, read straight into columns
    by pyarrow.json: no Python object per event, and without the GIL (a third of
    orjson's time alone, and orjson's objects then had to be converted). Only envelopes
    written as our producers write them (orjson's compact form, `schema` first) are
    read, and only when all of them read exactly as `decode_message` reads them: else
    none is, and the caller decodes every message one by one.

    pyarrow.json reads lines: each message must be one line, and one object (two on
    a line read as two rows, which the row count catches). A field of another JSON type
    than its column's (a number sent as text, 200.0 for a status), an unknown field, a
    repeated key, metadata with fields, or a value orjson refuses (bad UTF-8, a lone
    surrogate) fails the read as a whole; NaN reads, and fails the range check after."""
    messages = [
        i
        for i, value in enumerate(values)
        if value and value.startswith(_JSON_PREFIX) and b"\n" not in value and b"\r" not in value
    ]
    nothing = JsonEnvelopes([], _EMPTY_EVENTS, np.empty(0, np.int64), np.empty(0, bool))
    if not messages:
        return nothing
    lines = [cast(bytes, values[i]) for i in messages]
    table = _read_json(lines, _JSON_ENVELOPES)
    if table is None:
        return nothing
    schema, lists = (table.column(name).combine_chunks() for name in ("schema", "events"))
    if lists.null_count or schema.null_count or not pc.all(pc.equal(schema, BATCH_SCHEMA)).as_py():
        return nothing
    counts = pc.list_value_length(lists).to_numpy()
    events = lists.flatten()
    doubtful = np.fromiter((b"null" in line for line in lines), bool, len(lines))
    return JsonEnvelopes(messages, events, counts, _unsure(events, np.repeat(doubtful, counts)))


class JsonEvents(NamedTuple):
    events: pa.StructArray  # core.columns.JSON_EVENT
    unsure: np.ndarray  # as JsonEnvelopes.unsure


_JSON_ARRAY: Final = pa.schema([("events", pa.list_(JSON_EVENT))])


def read_json_array(text: bytes) -> JsonEvents | None:
    """The events of a JSON array of events (an HTTP ingest body), read as
    `read_json_envelopes` reads an envelope's: None unless it reads exactly as orjson
    reads it, in the compact form (one line)."""
    if not text.startswith(b"[") or b"\n" in text or b"\r" in text:
        return None
    # An object of one field holding the array: what pyarrow.json reads (one per line).
    table = _read_json([b'{"events":' + text + b"}"], _JSON_ARRAY)
    if table is None:
        return None
    lists = table.column("events").combine_chunks()
    if lists.null_count:
        return None
    events = lists.flatten()
    return JsonEvents(events, _unsure(events, np.full(len(events), b"null" in text)))


def _read_json(lines: list[bytes], schema: pa.Schema) -> pa.Table | None:
    """Lines of JSON objects, one row each, or None when one does not read as `schema`
    says (a field of another JSON type, one unknown, one repeated...) or a line holds
    more than one object."""
    text = b"\n".join(lines)
    # Blocks of a megabyte are parsed on Arrow's threads (a third faster on two cores);
    # a block must hold a whole line.
    block = max(_JSON_BLOCK_BYTES, max(map(len, lines)) + 1)
    read = pajson.ReadOptions(use_threads=True, block_size=block)
    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    try:
        table = pajson.read_json(pa.py_buffer(text), read_options=read, parse_options=options)
    except (pa.ArrowException, ValueError):  # ValueError: UnicodeDecodeError
        return None
    return table if table.num_rows == len(lines) else None


def _unsure(events: pa.StructArray, doubtful: np.ndarray) -> np.ndarray:
    """Per event: metadata read as null where the text holds an explicit null."""
    absent = events.field("metadata").is_null().to_numpy(zero_copy_only=False)
    return np.asarray(absent & doubtful, dtype=bool)


def _read_columns(value: bytes) -> pa.Table:
    """The batch as WIRE_COLUMNS. A batch packed before an optional field was added
    to the event lacks its column: it reads as null (the field's default). Any other
    difference (a column unknown here, a required one missing, another type) is the
    record's fault: a dead letter, never a guess."""
    try:
        table = pa.ipc.open_stream(value[len(_COLUMNS_PREFIX) :]).read_all()
    except (pa.ArrowException, ValueError) as exc:
        raise MessageDecodeError(f"not a readable {COLUMNS_SCHEMA} batch: {exc}") from None
    if table.schema.equals(WIRE_COLUMNS):
        return table
    present = set(table.schema.names)
    missing = [f for f in WIRE_COLUMNS if f.name not in present]
    if present <= set(WIRE_COLUMNS.names) and all(f.name in OPTIONAL_FIELDS for f in missing):
        columns = [
            table.column(f.name) if f.name in present else pa.nulls(table.num_rows, f.type)
            for f in WIRE_COLUMNS
        ]
        try:
            return pa.table(columns, schema=WIRE_COLUMNS)
        except (pa.ArrowException, ValueError):
            pass  # a column of another type
    raise MessageDecodeError(
        f"a {COLUMNS_SCHEMA} batch of other columns: {table.schema}; expected {WIRE_COLUMNS}"
    )
