"""UsageWindows: per-pass tumbling windows over event time, each record applied once.

State lives in a `WindowStore` (a Faust table with a changelog in the worker, a
dict in unit tests). A window not in the store (never seen, or evicted after
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

from sentinel_usage.core.aggregate import WindowKey, WindowState
from sentinel_usage.core.columns import KEY_SEPARATOR, events_table, row_keys
from sentinel_usage.core.events import UsageEvent
from sentinel_usage.core.sketch import ZERO_KEY, sketch_keys
from sentinel_usage.core.windows import EPOCH
from sentinel_usage.stream.decode import SourceRecord


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

    def apply(
        self,
        items: Assigned | Sequence[tuple[UsageEvent, SourceRecord]],
        loaded: dict[WindowKey, WindowState],
    ) -> list[WindowState]:
        """Add each event to its window unless its record was applied before; write
        the changed windows to the store and return them.

        `items` comes from `assign` (the sink's form), or is (event, record) pairs."""
        groups = items if isinstance(items, Assigned) else self.assign(_pairs_table(items))
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
    if table.num_rows == 0:
        return np.empty(0, dtype=np.int64)
    n = len(states)
    success = table.column("success").to_numpy(zero_copy_only=False)
    request = pc.not_equal(table.column("activity_type"), "token_generation").to_numpy(
        zero_copy_only=False
    )
    duration = table.column("duration_ms").to_numpy()
    started = table.column("started_at").cast(pa.int64()).to_numpy()
    offsets = table.column("source_offset").to_numpy()
    partitions = table.column("source_partition").to_numpy()

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(gids[mask], minlength=n)

    rows = np.bincount(gids, minlength=n)
    requests, successes = count(request), count(request & success)
    tokens, token_failures = count(~request), count(~request & ~success)
    latency_sum = np.bincount(gids[request], weights=duration[request], minlength=n)
    latency_max = np.full(n, -np.inf)
    np.maximum.at(latency_max, gids[request], duration[request])
    last_ms = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(last_ms, gids, started)
    last_offset = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last_offset, gids, offsets)
    partition = np.zeros(n, dtype=np.int64)
    partition[gids] = partitions  # the last row's (a pass's rows share one partition)

    keys = sketch_keys(duration[request])
    sketch_groups = gids[request]
    zero = keys == ZERO_KEY
    zero_counts = np.bincount(sketch_groups[zero], minlength=n)
    bins = _pair_counts(sketch_groups[~zero], keys[~zero])
    endpoints = pc.dictionary_encode(table.column("endpoint")).combine_chunks()
    names = endpoints.dictionary.to_pylist()
    endpoint_counts = _pair_counts(gids[request], endpoints.indices.to_numpy()[request])

    changed = np.flatnonzero(rows)
    for g in changed.tolist():
        a = states[g].aggregate
        if requests[g]:
            a.total_requests += int(requests[g])
            a.success_count += int(successes[g])
            a.error_count += int(requests[g] - successes[g])
            a.latency_sum_ms += float(latency_sum[g])
            a.latency_count += int(requests[g])
            a.latency_max_ms = max(a.latency_max_ms, float(latency_max[g]))
            a.sketch.zero_count += int(zero_counts[g])
        a.token_generations += int(tokens[g])
        a.token_failures += int(token_failures[g])
        last = EPOCH + timedelta(milliseconds=int(last_ms[g]))
        if a.last_event_at is None or last > a.last_event_at:
            a.last_event_at = last
        states[g].source_partition = int(partition[g])
        states[g].last_offset = max(states[g].last_offset, int(last_offset[g]))
    for g, key, c in bins:
        sketch_bins = states[g].aggregate.sketch.bins
        sketch_bins[key] = sketch_bins.get(key, 0) + c
    for g, index, c in endpoint_counts:
        counts = states[g].aggregate.endpoint_counts
        counts[names[index]] = counts.get(names[index], 0) + c
    return changed


def _pair_counts(groups: np.ndarray, values: np.ndarray) -> list[tuple[int, int, int]]:
    """(group, value, occurrences) for each distinct pair."""
    if len(groups) == 0:
        return []
    low = int(values.min())
    span = int(values.max()) - low + 1
    combined, counts = np.unique(groups * span + (values - low), return_counts=True)
    group, value = np.divmod(combined, span)
    return list(zip(group.tolist(), (value + low).tolist(), counts.tolist(), strict=True))


def _pairs_table(items: Sequence[tuple[UsageEvent, SourceRecord]]) -> pa.Table:
    table = events_table([event for event, _ in items])
    return table.append_column(
        "source_partition", pa.array([s.partition for _, s in items], pa.int32())
    ).append_column("source_offset", pa.array([s.offset for _, s in items], pa.int64()))


class InMemoryWindowStore:
    """A dict as the windows' store: for unit tests and tools (no changelog)."""

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
