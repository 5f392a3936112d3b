"""A Faust table as the store of the windows and of the alerts' state."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class TableWindowStore:
    """A Faust table as the windows' store.

    Writes go to the table's local data and to its changelog *at the partition
    of the pass's source record*: Faust would take the partition of the
    stream's current event, and a batch mixes partitions. Recovery after a
    restart or rebalance rebuilds the data from the changelog.
    """

    def __init__(self, table: Any) -> None:
        self._table = table

    def get(self, key: bytes) -> bytes | None:
        value = self._table.data.get(key)
        return bytes(value) if value is not None else None

    def put(self, key: bytes, value: bytes, partition: int) -> None:
        self._table.data[key] = value
        self._table.send_changelog(partition, key, value)

    def delete(self, key: bytes, partition: int) -> None:
        self._table.data.pop(key, None)
        self._table.send_changelog(partition, key, None, value_serializer="raw")

    def values(self) -> Iterable[bytes]:
        return [bytes(v) for v in self._table.data.values()]

    def items(self) -> Iterable[tuple[bytes, bytes]]:
        return [(bytes(k), bytes(v)) for k, v in self._table.data.items()]
