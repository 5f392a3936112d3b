"""UsageWindows: per-pass tumbling windows over event time, each record applied once.

State lives in a `WindowStore` (a Faust table with a changelog in the worker; the
tests use a dict, tests/stream_support.py). A window not in the store (never seen, or evicted after
the resident horizon) is loaded from the rollups first, so an event arriving
hours late is still added to its own window.

Exactly once per record: a window remembers the highest source offset applied
to it, and a record at or below it is a redelivery and is skipped. Resent
events (same identity, new record) are filtered before this step, against the
activity log (see sink.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sentinel_usage.core.aggregate import WindowKey, WindowState, add_table
from sentinel_usage.core.columns import KEY_SEPARATOR, row_keys
from sentinel_usage.core.windows import EPOCH


class WindowStore(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def put(self, key: bytes, value: bytes, partition: int) -> None: ...
    def delete(self, key: bytes, partition: int) -> None: ...
    def values(self) -> Iterable[bytes]: ...


@dataclass(frozen=True)
class WindowPolicy:
    size: timedelta = timedelta(minutes=1)
    # Windows this far behind the newest event time seen stay in the store;
    # older ones are written out and evicted (and reloaded if an event comes).
    resident: timedelta = timedelta(minutes=15)


class UsageWindows:
    def __init__(
        self, store: WindowStore, policy: WindowPolicy = WindowPolicy(), epoch: str = ""
    ) -> None:
        self._store = store
        self._policy = policy
        self._epoch = epoch  # the broker's life the source offsets belong to
        self._step_ms = policy.size // timedelta(milliseconds=1)

    def assign(self, table: pa.Table) -> Assigned:
        """Each event of `table` (core.columns.EVENT_SCHEMA with `source_partition`
        and `source_offset`) with its window: what `apply` takes."""
        return _assign(table, self._step_ms)

    def missing(self, keys: Iterable[WindowKey]) -> list[WindowKey]:
        """Keys whose state must be loaded from the rollups before `apply`."""
        return [k for k in keys if self._store.get(k.encode()) is None]

    def apply(self, groups: Assigned, loaded: dict[WindowKey, WindowState]) -> list[WindowState]:
        """Add each event of `groups` (from `assign`) to its window unless its record was
        applied before; write the changed windows to the store and return them."""
        table = groups.table
        if table.num_rows == 0:
            return []
        first = np.unique(groups.ids, return_index=True)[1]
        states: list[WindowState] = []
        watermarks = np.empty(len(groups.keys), dtype=np.int64)
        partitions = table.column("source_partition").to_numpy()
        for gid, key in enumerate(groups.keys):
            state = self._state(key, loaded)
            if state.source_epoch != self._epoch:
                # Offsets of another broker's life (an embedded restart): not comparable.
                # Kept, they made the new life's records, from offset 0 again, look
                # like redeliveries and skipped them.
                state.source_epoch, state.last_offset = self._epoch, -1
            states.append(state)
            partition = int(partitions[first[gid]])
            watermarks[gid] = state.last_offset if state.source_partition == partition else -1
        offsets = table.column("source_offset").to_numpy()
        new = offsets > watermarks[groups.ids]  # a record at or below: a redelivery
        if not new.all():
            table = table.filter(pa.array(new))
            gids = groups.ids[new]
        else:
            gids = groups.ids
        changed = [states[g] for g in _add(table, gids, states).tolist()]
        for state in changed:
            self._store.put(state.key.encode(), state.to_bytes(), state.source_partition)
        return changed

    def evictable(self, now: datetime) -> list[WindowState]:
        """Windows that ended more than the resident horizon before `now`."""
        horizon = now - self._policy.resident - self._policy.size
        states = (WindowState.from_bytes(v) for v in self._store.values())
        return [s for s in states if s.window_start < horizon]

    def evict(self, states: Sequence[WindowState]) -> None:
        """Drop `states` from the store (write them to the rollups first)."""
        for state in states:
            self._store.delete(state.key.encode(), state.source_partition)

    def resident(self) -> list[WindowState]:
        return [WindowState.from_bytes(v) for v in self._store.values()]

    def _state(self, key: WindowKey, loaded: dict[WindowKey, WindowState]) -> WindowState:
        stored = self._store.get(key.encode())
        if stored is not None:
            return WindowState.from_bytes(stored)
        if key in loaded:
            return loaded[key]
        return WindowState(*key, window_seconds=int(self._policy.size.total_seconds()))


def fresh_windows(table: pa.Table, policy: WindowPolicy, epoch: str) -> list[WindowState]:
    """The windows of `table`'s events (with `source_partition` and `source_offset`),
    built from nothing: no store, no state before (rebuilding from the raw log)."""
    groups = _assign(table, policy.size // timedelta(milliseconds=1))
    seconds = int(policy.size.total_seconds())
    states = [WindowState(*key, window_seconds=seconds, source_epoch=epoch) for key in groups.keys]
    return [states[g] for g in _add(groups.table, groups.ids, states).tolist()]


class Assigned(NamedTuple):
    table: pa.Table  # the events, with `window_ms` (their window's start, epoch ms)
    keys: list[WindowKey]  # the distinct windows
    ids: np.ndarray  # per row, the index of its window in `keys`


def _assign(table: pa.Table, step_ms: int) -> Assigned:
    millis = table.column("started_at").cast(pa.int64()).to_numpy()
    table = table.append_column("window_ms", pa.array(millis - millis % step_ms))
    if table.num_rows == 0:
        return Assigned(table, [], np.empty(0, dtype=np.int64))
    joined = row_keys(*(table.column(name) for name in ("project_id", "pass_id", "window_ms")))
    encoded = pc.dictionary_encode(joined)
    keys = []
    for text in encoded.dictionary.to_pylist():
        project_id, pass_id, millis = text.split(KEY_SEPARATOR)
        keys.append(WindowKey(project_id, pass_id, EPOCH + timedelta(milliseconds=int(millis))))
    return Assigned(table, keys, encoded.indices.to_numpy())


def _add(table: pa.Table, gids: np.ndarray, states: list[WindowState]) -> np.ndarray:
    """Add the rows of `table` (row i to `states[gids[i]]`); return the ids changed."""
    changed = add_table([state.aggregate for state in states], gids, table)
    if len(changed) == 0:
        return changed
    n = len(states)
    last_offset = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last_offset, gids, table.column("source_offset").to_numpy())
    partition = np.zeros(n, dtype=np.int64)
    partition[gids] = table.column("source_partition").to_numpy()  # a pass's rows share one
    for g in changed.tolist():
        states[g].source_partition = int(partition[g])
        states[g].last_offset = max(states[g].last_offset, int(last_offset[g]))
    return changed
