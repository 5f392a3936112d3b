"""One ingest request's events: validated once, split into what the caller's token may
write and what it may not, and packed as the columnar batches the worker takes as they
are (core/wire.py). Pure: no I/O."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from sentinel_usage.core.columns import validate_events
from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.wire import Envelope, pack_columns
from sentinel_usage.ingest.body import LineError

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
    table = checked.table
    projects = pc.unique(table.column("project_id")).to_pylist()
    denied = [project for project in projects if not may_write(project)]
    if denied:
        outside = pc.is_in(table.column("project_id"), pa.array(denied, pa.string()))
        for row in table.filter(outside).column("row").to_pylist():
            refused.append((index_of[row], [NOT_GRANTED]))
        table = table.filter(pc.invert(outside))
    refused.sort(key=lambda item: item[0])
    return IngestBatch(list(pack_columns(table, partition_of)), refused)
