"""The Kafka message format of `sentinel.usage.events`.

A message is either a batch envelope, `{"schema": "sentinel.usage.batch/1",
"events": [...]}` carrying many events of one pass (the fast path: one Kafka
message per event tops out near 6.7k events/s in Faust), or one bare event
object, as a third-party producer may send it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final, NamedTuple

import orjson

from sentinel_usage.core.events import UsageEvent

BATCH_SCHEMA: Final = "sentinel.usage.batch/1"
# Kafka's default message.max.bytes is 1 MiB; stay well below it.
MAX_ENVELOPE_BYTES: Final = 900 * 1024
MAX_ENVELOPE_EVENTS: Final = 2_000


class Envelope(NamedTuple):
    # The message key: the envelope's pass (or, for an envelope of several
    # passes of one partition, its first pass: every one of them hashes there).
    pass_id: str
    payload: bytes
    event_count: int


class MessageDecodeError(ValueError):
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
