"""Kafka records to events and dead letters: pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from sentinel_usage.core.errors import InvalidEventError
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


@dataclass
class DecodedBatch:
    events: list[UsageEvent] = field(default_factory=list)
    sources: list[SourceRecord] = field(default_factory=list)  # the record of each event
    dead_letters: list[DeadLetter] = field(default_factory=list)


def decode_records(records: list[SourceRecord], validator: EventValidator) -> DecodedBatch:
    """Every valid event of `records`; everything else as a dead letter with its reason."""
    batch = DecodedBatch()
    for record in records:
        try:
            message = decode_message(record.value)
        except MessageDecodeError as exc:
            batch.dead_letters.append(
                DeadLetter(str(exc), record, payload=_payload_text(record.value))
            )
            continue
        for index, raw in enumerate(message.events):
            try:
                batch.events.append(validator.validate(raw))
                batch.sources.append(record)
            except InvalidEventError as exc:
                batch.dead_letters.append(
                    DeadLetter(
                        "invalid event",
                        record,
                        index=index if message.envelope else None,
                        errors=exc.errors,
                        payload=raw,
                    )
                )
    return batch


def _payload_text(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value[:MAX_DEAD_PAYLOAD_BYTES].decode("utf-8", "replace")
