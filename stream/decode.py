"""Kafka records to events and dead letters: pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from sentinel_usage.core.columns import table_events, validate_events
from sentinel_usage.core.events import EventValidator, UsageEvent
from sentinel_usage.core.wire import MessageDecodeError, decode_message

MAX_DEAD_PAYLOAD_BYTES = 64 * 1024


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
        return orjson.dumps(
            {
                "reason": self.reason,
                "errors": self.errors,
                "source_topic": self.source.topic,
                "source_partition": self.source.partition,
                "source_offset": self.source.offset,
                "index": self.index,
                "key": self.source.key.decode("utf-8", "replace") if self.source.key else None,
                "payload": self.payload,
                "failed_at": (now or datetime.now(UTC)).isoformat(),
            }
        )


SOURCE_COLUMNS = ("source_partition", "source_offset")


@dataclass
class DecodedBatch:
    # Valid events (core.columns.EVENT_SCHEMA) with the partition and offset of the
    # record each came from, in record order.
    table: pa.Table
    dead_letters: list[DeadLetter] = field(default_factory=list)

    @property
    def events(self) -> list[UsageEvent]:
        """The events as objects (for tests and tools; the sink stays columnar)."""
        return table_events(self.table.drop_columns(list(SOURCE_COLUMNS)))


def decode_records(records: list[SourceRecord], validator: EventValidator) -> DecodedBatch:
    """Every valid event of `records`; everything else as a dead letter with its reason."""
    raws: list[Any] = []
    first_raw: list[int] = []  # per decoded record, the index of its first event in raws
    decoded: list[tuple[int, SourceRecord, bool]] = []  # (position, record, is envelope)
    dead: list[tuple[int, int, DeadLetter]] = []  # (record position, index, letter)
    for position, record in enumerate(records):
        try:
            message = decode_message(record.value)
        except MessageDecodeError as exc:
            letter = DeadLetter(str(exc), record, payload=_payload_text(record.value))
            dead.append((position, -1, letter))
            continue
        first_raw.append(len(raws))
        decoded.append((position, record, message.envelope))
        raws.extend(message.events)
    validated = validate_events(raws, validator)

    starts = np.array(first_raw, dtype=np.int64)
    record_of = np.searchsorted(starts, validated.table.column("row").to_numpy(), side="right") - 1
    partitions = np.array([r.partition for _, r, _ in decoded], dtype=np.int32)
    offsets = np.array([r.offset for _, r, _ in decoded], dtype=np.int64)
    table = validated.table.append_column(
        "source_partition", pa.array(partitions[record_of])
    ).append_column("source_offset", pa.array(offsets[record_of]))
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
    return DecodedBatch(table, [letter for _, _, letter in dead])


def _payload_text(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value[:MAX_DEAD_PAYLOAD_BYTES].decode("utf-8", "replace")
