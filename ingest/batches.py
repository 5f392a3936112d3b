"""One ingest request's events: validated once, split into what the caller's token may
write and what it may not, packed as the columnar batches the worker takes as they are
(core/wire.py), and published. prepare_batch is pure; EventIngest does the I/O."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
from aiokafka.errors import KafkaError

from sentinel_usage.core.columns import validate_events, validate_json_events
from sentinel_usage.core.errors import SentinelError
from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.wire import Envelope, pack_columns, read_json_array
from sentinel_usage.ingest.body import (
    LineError,
    TooManyEventsError,
    is_json,
    media_type,
    parse_event_body,
)
from sentinel_usage.ingest.journal import JournalError
from sentinel_usage.ingest.producer import Publisher

FieldErrors = list[dict[str, str]]  # {"field": ..., "message": ...}
NOT_GRANTED: Final = {"field": "project_id", "message": "not granted by this token"}


@dataclass(frozen=True)
class IngestBatch:
    envelopes: list[Envelope]  # to publish
    rejected: list[tuple[int, FieldErrors]]  # (index in the request, why), in order

    @property
    def accepted(self) -> int:
        return sum(envelope.event_count for envelope in self.envelopes)


def prepare_batch(
    items: Sequence[Any],
    validator: EventValidator,
    may_write: Callable[[str], bool],
    partition_of: Callable[[str], int],
) -> IngestBatch:
    """The envelopes to publish and the events refused, by index in the request:
    invalid ones (with each field's error), unreadable NDJSON lines, and events of a
    project the token does not grant (`may_write(project_id)`)."""
    refused: list[tuple[int, FieldErrors]] = []
    candidates: list[Any] = []
    index_of: list[int] = []  # candidate -> index in the request
    for index, item in enumerate(items):
        if isinstance(item, LineError):
            refused.append((index, [{"field": "", "message": item.message}]))
        else:
            candidates.append(item)
            index_of.append(index)
    checked = validate_events(candidates, validator)
    refused += [(index_of[row], exc.errors) for row, exc in checked.rejected]
    return _publishable(checked.table, index_of, refused, may_write, partition_of)


def prepare_json_array(
    body: bytes,
    validator: EventValidator,
    may_write: Callable[[str], bool],
    partition_of: Callable[[str], int],
    max_events: int,
) -> IngestBatch | None:
    """`prepare_batch` of a compact JSON array body read straight into columns
    (core.wire.read_json_array); None unless it reads so and every event passes the
    vectorised checks, when the body goes the object path (which says why an event is
    refused). Raises TooManyEventsError."""
    read = read_json_array(body)
    if read is None:
        return None
    if len(read.events) > max_events:
        raise TooManyEventsError(len(read.events), max_events)
    validated = validate_json_events(read.events, validator.policy)
    if not validated.ok.all() or read.unsure.any():
        return None
    return _publishable(validated.table, range(len(read.events)), [], may_write, partition_of)


def _publishable(
    table: pa.Table,
    index_of: Sequence[int],
    refused: list[tuple[int, FieldErrors]],
    may_write: Callable[[str], bool],
    partition_of: Callable[[str], int],
) -> IngestBatch:
    """The valid events (`table`, whose `row` is an index into `index_of`) packed, but
    those of a project the token does not grant, refused with the others."""
    projects = pc.unique(table.column("project_id")).to_pylist()
    denied = [project for project in projects if not may_write(project)]
    if denied:
        outside = pc.is_in(table.column("project_id"), pa.array(denied, pa.string()))
        for row in table.filter(outside).column("row").to_pylist():
            refused.append((index_of[row], [NOT_GRANTED]))
        table = table.filter(pc.invert(outside))
    refused.sort(key=lambda item: item[0])
    return IngestBatch(list(pack_columns(table, partition_of)), refused)


class PublishError(SentinelError):
    """The accepted events could not be made durable (the broker or the journal
    refused): nothing of the request may be taken as accepted; the caller retries."""


@dataclass(frozen=True)
class EventIngest:
    """POST /v1/events without the HTTP: a request body in, its events validated once,
    published, and what was refused said by index. Raises ingest.body's BodyError kinds
    for a body that cannot be read, and PublishError."""

    validator: EventValidator
    publisher: Publisher
    max_events: int

    async def ingest(
        self, body: bytes, content_type: str | None, may_write: Callable[[str], bool]
    ) -> IngestBatch:
        try:
            partition_of = await self.publisher.partitioner()
            # Reading, validation and packing are CPU work: off the event loop.
            batch = await asyncio.to_thread(
                self.prepare, body, content_type, may_write, partition_of
            )
            if batch.envelopes:
                await self.publisher.publish_envelopes(batch.envelopes)
        except (KafkaError, JournalError) as exc:
            raise PublishError(exc.__class__.__name__) from exc
        return batch

    def prepare(
        self,
        body: bytes,
        content_type: str | None,
        may_write: Callable[[str], bool],
        partition_of: Callable[[str], int],
    ) -> IngestBatch:
        """Blocking: the body's events validated and packed, by columns if they read so."""
        if is_json(media_type(content_type)):
            read = prepare_json_array(
                body, self.validator, may_write, partition_of, self.max_events
            )
            if read is not None:
                return read
        items = parse_event_body(body, content_type, self.max_events)
        return prepare_batch(items, self.validator, may_write, partition_of)
