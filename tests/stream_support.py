"""Stand-ins the stream's tests use: a dict as the windows' store, and events with
their source records as the table `UsageWindows.apply` takes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pyarrow as pa

from sentinel_usage.core.columns import events_table
from sentinel_usage.core.events import UsageEvent
from sentinel_usage.stream.decode import SourceRecord
from sentinel_usage.stream.windows import Assigned, UsageWindows


class InMemoryWindowStore:
    """A dict as the windows' store (no changelog)."""

    def __init__(self) -> None:
        self.data: dict[bytes, tuple[bytes, int]] = {}

    def get(self, key: bytes) -> bytes | None:
        entry = self.data.get(key)
        return entry[0] if entry else None

    def put(self, key: bytes, value: bytes, partition: int) -> None:
        self.data[key] = (value, partition)

    def delete(self, key: bytes, partition: int) -> None:
        self.data.pop(key, None)

    def values(self) -> Iterable[bytes]:
        return [value for value, _ in self.data.values()]

    def items(self) -> Iterable[tuple[bytes, bytes]]:
        return [(key, value) for key, (value, _) in self.data.items()]


def assigned(windows: UsageWindows, items: Sequence[tuple[UsageEvent, SourceRecord]]) -> Assigned:
    """(event, record) pairs as the sink hands them to `apply`."""
    table = events_table([event for event, _ in items])
    table = table.append_column(
        "source_partition", pa.array([s.partition for _, s in items], pa.int32())
    ).append_column("source_offset", pa.array([s.offset for _, s in items], pa.int64()))
    return windows.assign(table)
