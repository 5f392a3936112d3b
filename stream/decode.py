"""Kafka records to events and dead letters: pure, no I/O."""

from __future__ import annotations

import reprlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import orjson
import pyarrow as pa
import structlog

from sentinel_usage.core.columns import table_events, validate_events, validate_json_events
from sentinel_usage.core.errors import InvalidRecordError
from sentinel_usage.core.events import EventValidator, UsageEvent, ValidationPolicy
from sentinel_usage.core.wire import WIRE_COLUMNS, decode_message, read_json_envelopes

MAX_DEAD_PAYLOAD_BYTES = 64 * 1024

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SourceRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class DeadLetter:
    """One message, or one event of an envelope, that cannot be processed, and why."""

    reason: str
    source: SourceRecord
    index: int | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    payload: Any = None

    def to_json(self, now: datetime | None = None) -> bytes:
        """The dead-letter record. Always serialisable and bounded: a payload that
        orjson refuses (nested too deep) or that is larger than
        MAX_DEAD_PAYLOAD_BYTES is kept as the start of its text instead."""
        return orjson.dumps(
            {
                "reason": self.reason,
                "errors": self.errors,
                "source_topic": self.source.topic,
                "source_partition": self.source.partition,
                "source_offset": self.source.offset,
                "index": self.index,
                "key": self.source.key.decode("utf-8", "replace") if self.source.key else None,
                "payload": _bounded_payload(self.payload),
                "failed_at": (now or datetime.now(UTC)).isoformat(),
            }
        )


def _bounded_payload(payload: Any) -> Any:
    if payload is None or isinstance(payload, str):
        return payload if payload is None else payload[:MAX_DEAD_PAYLOAD_BYTES]
    try:
        text = orjson.dumps(payload)
    except TypeError:
        return repr_prefix(payload)
    if len(text) > MAX_DEAD_PAYLOAD_BYTES:
        return text[:MAX_DEAD_PAYLOAD_BYTES].decode("utf-8", "replace")
    # As serialised already: one level deeper inside the letter, a payload at
    # orjson's nesting limit would fail again.
    return orjson.Fragment(text)


def repr_prefix(value: Any) -> str:
    """The start of a value's text form, for a payload orjson refuses (reprlib
    bounds depth and length, so deep nesting cannot raise here)."""
    return _SHORT_REPR.repr(value)[:MAX_DEAD_PAYLOAD_BYTES]


_SHORT_REPR: Final = reprlib.Repr()
_SHORT_REPR.maxlevel = 8
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 256


SOURCE_COLUMNS = ("source_partition", "source_offset")


@dataclass
class DecodedBatch:
    # Valid events (core.wire.WIRE_COLUMNS) with the partition and offset of the record
    # each came from, in record order.
    table: pa.Table
    dead_letters: list[DeadLetter] = field(default_factory=list)

    @property
    def events(self) -> list[UsageEvent]:
        """The events as objects (for tests and tools; the sink stays columnar)."""
        return table_events(self.table.drop_columns(list(SOURCE_COLUMNS)))


def decode_records(records: list[SourceRecord], validator: EventValidator) -> DecodedBatch:
    """Every valid event of `records`; everything else as a dead letter with its reason.

    Never raises for what a record holds: whatever a producer wrote is either
    decoded or dead-lettered, and the records after it flow on (invariant 4).
    The batch is decoded as a whole; should that fail on something the checks
    did not foresee, each record is decoded alone, and the one that fails alone
    is dead-lettered with the error as its reason."""
    try:
        return _decode(records, validator)
    except Exception:  # noqa: BLE001 - pure code on untrusted bytes: isolate the record below
        log.warning("batch_decode_failed_decoding_records_alone", records=len(records))
    parts = [_decode_alone(record, validator) for record in records]
    table = pa.concat_tables([part.table for part in parts])
    return DecodedBatch(table, [letter for part in parts for letter in part.dead_letters])


def _decode_alone(record: SourceRecord, validator: EventValidator) -> DecodedBatch:
    try:
        return _decode([record], validator)
    except Exception as exc:  # noqa: BLE001 - this record alone cannot be processed
        letter = DeadLetter(
            f"unprocessable record: {type(exc).__name__}: {exc}"[:1024],
            record,
            payload=_payload_text(record.value),
        )
        return DecodedBatch(_EMPTY, [letter])


def _decode(records: list[SourceRecord], validator: EventValidator) -> DecodedBatch:
    read, rest = _json_envelopes(records, validator.policy)
    raws: list[Any] = []
    first_raw: list[int] = []  # per decoded record, the index of its first event in raws
    decoded: list[tuple[int, SourceRecord, bool]] = []  # (position, record, is envelope)
    # Read as columns (JSON envelopes), or validated at the ingest (columnar batches).
    columnar: list[pa.Table] = [] if read is None else [read]
    dead: list[tuple[int, int, DeadLetter]] = []  # (record position, index, letter)
    for position in rest:
        record = records[position]
        try:
            message = decode_message(record.value)
        except InvalidRecordError as exc:
            letter = DeadLetter(str(exc), record, payload=_payload_text(record.value))
            dead.append((position, -1, letter))
            continue
        if message.columns is not None:
            columnar.append(_with_source(message.columns, position, record))
            continue
        first_raw.append(len(raws))
        decoded.append((position, record, message.envelope))
        raws.extend(message.events)
    validated = validate_events(raws, validator)

    starts = np.array(first_raw, dtype=np.int64)
    record_of = np.searchsorted(starts, validated.table.column("row").to_numpy(), side="right") - 1
    partitions = np.array([r.partition for _, r, _ in decoded], dtype=np.int32)
    offsets = np.array([r.offset for _, r, _ in decoded], dtype=np.int64)
    positions = np.array([position for position, _, _ in decoded], dtype=np.int64)
    table = (
        validated.table.drop_columns(["row"])
        .append_column("source_partition", pa.array(partitions[record_of]))
        .append_column("source_offset", pa.array(offsets[record_of]))
        .append_column("position", pa.array(positions[record_of]))
    )
    if columnar:
        # Record order, as the records came (a stable sort keeps each record's rows in
        # their order).
        table = pa.concat_tables([table, *columnar]).sort_by("position")
    for raw_index, error in validated.rejected:
        which = int(np.searchsorted(starts, raw_index, side="right")) - 1
        position, record, envelope = decoded[which]
        index = raw_index - first_raw[which]
        letter = DeadLetter(
            "invalid event", record, index=index if envelope else None,
            errors=error.errors, payload=raws[raw_index],
        )  # fmt: skip
        dead.append((position, index, letter))
    dead.sort(key=lambda item: item[:2])
    return DecodedBatch(table.drop_columns(["position"]), [letter for _, _, letter in dead])


def _json_envelopes(
    records: list[SourceRecord], policy: ValidationPolicy
) -> tuple[pa.Table | None, list[int]]:
    """The events of the JSON envelopes that core.wire reads as columns and whose every
    event passes the vectorised checks (with their source columns and position); and
    the positions of the other records, to decode one by one."""
    read = read_json_envelopes([record.value for record in records])
    if not read.messages:
        return None, list(range(len(records)))
    validated = validate_json_events(read.events, policy)
    message = np.repeat(np.arange(len(read.messages)), read.counts)
    taken = np.ones(len(read.messages), dtype=bool)
    taken[message[~validated.ok | read.unsure]] = False
    rows = taken[message]
    positions = np.array(read.messages, dtype=np.int64)[message[rows]]
    partitions = np.array([r.partition for r in records], dtype=np.int32)[positions]
    offsets = np.array([r.offset for r in records], dtype=np.int64)[positions]
    table = (
        validated.table.filter(pa.array(rows))
        .drop_columns(["row"])
        .append_column("source_partition", pa.array(partitions))
        .append_column("source_offset", pa.array(offsets))
        .append_column("position", pa.array(positions))
    )
    done = set(np.array(read.messages, dtype=np.int64)[taken].tolist())
    return table, [position for position in range(len(records)) if position not in done]


def _with_source(columns: pa.Table, position: int, record: SourceRecord) -> pa.Table:
    n = columns.num_rows
    return (
        columns.append_column("source_partition", pa.array(np.full(n, record.partition, np.int32)))
        .append_column("source_offset", pa.array(np.full(n, record.offset, np.int64)))
        .append_column("position", pa.array(np.full(n, position, np.int64)))
    )


_EMPTY: Final = (
    WIRE_COLUMNS.append(pa.field("source_partition", pa.int32()))
    .append(pa.field("source_offset", pa.int64()))
    .empty_table()
)


def _payload_text(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value[:MAX_DEAD_PAYLOAD_BYTES].decode("utf-8", "replace")
