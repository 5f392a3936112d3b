"""The Kafka message format of `sentinel.usage.events`.

A message is either a batch envelope, `{"schema": "sentinel.usage.batch/1",
"events": [...]}` carrying many events of one pass (the fast path: one Kafka
message per event tops out near 6.7k events/s in Faust), or one bare event
object, as a third-party producer may send it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final, NamedTuple

import orjson

from sentinel_usage.core.events import UsageEvent

BATCH_SCHEMA: Final = "sentinel.usage.batch/1"
# Kafka's default message.max.bytes is 1 MiB; stay well below it.
MAX_ENVELOPE_BYTES: Final = 900 * 1024
MAX_ENVELOPE_EVENTS: Final = 2_000


class Envelope(NamedTuple):
    pass_id: str
    payload: bytes
    event_count: int


class MessageDecodeError(ValueError):
    """A message that is not JSON, or not an event nor an envelope: dead-letter it."""


def encode_envelopes(events: Sequence[UsageEvent]) -> Iterator[Envelope]:
    """Pack events into envelope messages, each of one pass and bounded in
    size, in the order the events came (per pass)."""
    return pack_envelopes((event.pass_id, event.to_wire()) for event in events)


def pack_envelopes(objects: Iterable[tuple[str, dict[str, Any]]]) -> Iterator[Envelope]:
    """Envelopes of JSON-ready event objects, given with their pass ids."""
    by_pass: dict[str, list[dict[str, Any]]] = {}
    for pass_id, wire in objects:
        by_pass.setdefault(pass_id, []).append(wire)
    for pass_id, wires in by_pass.items():
        yield from _chunks(pass_id, wires)


def _chunks(pass_id: str, wires: list[dict[str, Any]]) -> Iterator[Envelope]:
    start = 0
    step = MAX_ENVELOPE_EVENTS
    while start < len(wires):
        chunk = wires[start : start + step]
        payload = orjson.dumps({"schema": BATCH_SCHEMA, "events": chunk})
        if len(payload) > MAX_ENVELOPE_BYTES and len(chunk) > 1:
            step = max(1, len(chunk) // 2)
            continue
        yield Envelope(pass_id, payload, len(chunk))
        start += len(chunk)
        step = MAX_ENVELOPE_EVENTS


class DecodedMessage(NamedTuple):
    events: list[Any]
    envelope: bool


def decode_message(value: bytes | None) -> DecodedMessage:
    """The raw event objects of one message (validate each one separately)."""
    if not value:
        raise MessageDecodeError("empty message")
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
