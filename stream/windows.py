"""UsageWindows: per-pass tumbling windows over event time, in every rollup tier (the
stream's window, a quarter of an hour, a UTC day: core/windows.py), each record applied
once to each.

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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sentinel_usage.core.aggregate import (
    RowFeatures,
    WindowKey,
    WindowState,
    add_rows,
    distinct,
)
from sentinel_usage.core.columns import KEY_SEPARATOR, row_keys
from sentinel_usage.core.windows import DAY, EPOCH, QUARTER_HOUR, unix_millis


class WindowStore(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def put(self, key: bytes, value: bytes, partition: int) -> None: ...
    def delete(self, key: bytes, partition: int) -> None: ...
    def values(self) -> Iterable[bytes]: ...
    def items(self) -> Iterable[tuple[bytes, bytes]]: ...


@dataclass(frozen=True)
class WindowPolicy:
    size: timedelta = timedelta(minutes=1)
    # Windows that ended this long before `now`, and took no event for as long, are
    # evicted from the store (reloaded from the rollups if an event of theirs comes).
    resident: timedelta = timedelta(minutes=15)
    # The coarser tiers' windows (core/windows.py), kept the same way beside `size`'s.
    coarser: tuple[int, ...] = (QUARTER_HOUR, DAY)

    @property
    def tier_seconds(self) -> tuple[int, ...]:
        """Every tier's window, in seconds, finest first."""
        finest = int(self.size.total_seconds())
        return (finest, *(s for s in self.coarser if s > finest))


class UsageWindows:
    """Every event is added to one window of each tier: the tiers are kept exactly as
    the finest one is (the same watermarks, store, eviction and rollup writes)."""

    def __init__(
        self, store: WindowStore, policy: WindowPolicy = WindowPolicy(), epoch: str = ""
    ) -> None:
        self._store = store
        self._policy = policy
        self._epoch = epoch  # the broker's life the source offsets belong to
        # When each window last took an event (as `apply` was told): a late event's window
        # stays for the resident horizon too, rather than being evicted at the next round
        # and looked up again for the next late event (a lookup a batch, in the bench).
        self._touched: dict[bytes, int] = {}

    def assign(self, table: pa.Table) -> Assigned:
        """Each event of `table` (core.columns.EVENT_SCHEMA with `source_partition`
        and `source_offset`) with its window in each tier: what `apply` takes."""
        return _assign(table, self._policy.tier_seconds)

    def missing(self, keys: Iterable[WindowKey]) -> list[WindowKey]:
        """Keys whose state must be loaded from the rollups before `apply`."""
        return [k for k in keys if self._store.get(k.encode()) is None]

    def apply(
        self,
        groups: Assigned,
        loaded: dict[WindowKey, WindowState],
        now: datetime | None = None,
    ) -> list[WindowState]:
        """Add each event of `groups` (from `assign`) to its windows unless its record was
        applied to them before; write the changed windows to the store and return them.
        `now`: when, for `evictable` (a window changed now is not evicted before the
        resident horizon has passed again)."""
        if groups.table.num_rows == 0:
            return []
        rows = _SourceRows.of(groups.table)
        changed: list[WindowState] = []
        for tier in groups.tiers:
            changed += self._apply_tier(rows, tier, loaded)
        touched = None if now is None else unix_millis(now)
        for state in changed:
            key = state.key.encode()
            self._store.put(key, state.to_bytes(), state.source_partition)
            if touched is not None:
                self._touched[key] = touched
        return changed

    def _apply_tier(
        self, rows: _SourceRows, tier: TierGroups, loaded: dict[WindowKey, WindowState]
    ) -> list[WindowState]:
        partitions = _partitions(rows, tier.ids, len(tier.keys))
        states: list[WindowState] = []
        watermarks = np.empty(len(tier.keys), dtype=np.int64)
        for gid, (key, partition) in enumerate(zip(tier.keys, partitions.tolist(), strict=True)):
            state = self._state(key, loaded)
            if state.source_epoch != self._epoch:
                # Offsets of another broker's life (an embedded restart): not comparable.
                # Kept, they made the new life's records, from offset 0 again, look
                # like redeliveries and skipped them.
                state.source_epoch, state.last_offset = self._epoch, -1
            states.append(state)
            watermarks[gid] = state.last_offset if state.source_partition == partition else -1
        new = rows.offsets > watermarks[tier.ids]  # a record at or below: a redelivery
        ids = tier.ids
        if not new.all():
            rows, ids = rows.subset(new), ids[new]
        return [states[g] for g in _add(rows, ids, states, partitions).tolist()]

    def evictable(self, now: datetime) -> list[WindowState]:
        """Windows that ended, and were last changed, more than the resident horizon
        before `now`."""
        horizon = unix_millis(now - self._policy.resident)
        touched = self._touched
        return self._select(
            lambda key, start, seconds: (
                start + seconds * 1000 < horizon and touched.get(key, horizon - 1) < horizon
            )
        )

    def evict(self, states: Sequence[WindowState]) -> None:
        """Drop `states` from the store. Their rollups need no write: every window in
        the store is in the rollups as it is (the sink writes what a batch changed, and
        what the store recovered, before it acks), so one evicted is reloaded whole."""
        for state in states:
            key = state.key.encode()
            self._store.delete(key, state.source_partition)
            self._touched.pop(key, None)

    def resident(
        self, window_seconds: int | None = None, starting_from: datetime | None = None
    ) -> list[WindowState]:
        """The windows in the store (only those of `window_seconds`, if given, and only
        those starting at or after `starting_from`)."""
        first = None if starting_from is None else unix_millis(starting_from)
        return self._select(
            lambda key, start, seconds: (
                (first is None or start >= first)
                and (window_seconds is None or seconds == window_seconds)
            )
        )

    def _select(self, chosen: Callable[[bytes, int, int], bool]) -> list[WindowState]:
        """The stored windows whose (key, start in Unix ms, seconds) is `chosen`, told by
        their keys: only those are decoded (decoding every resident window, sketch and
        all, was most of an eviction's or an alert round's stall of the stream)."""
        finest = int(self._policy.size.total_seconds())
        return [
            WindowState.from_bytes(value)
            for key, value in self._store.items()
            if chosen(key, *WindowKey.span_millis(key, finest))
        ]

    def _state(self, key: WindowKey, loaded: dict[WindowKey, WindowState]) -> WindowState:
        stored = self._store.get(key.encode())
        if stored is not None:
            return WindowState.from_bytes(stored)
        if key in loaded:
            return loaded[key]
        return WindowState(*key)


def fresh_windows(table: pa.Table, window_seconds: int, epoch: str) -> list[WindowState]:
    """The windows of `window_seconds` of `table`'s events (with `source_partition` and
    `source_offset`), built from nothing: no store, no state before (rebuilding from the
    raw log)."""
    (tier,) = _assign(table, (window_seconds,)).tiers
    states = [WindowState(*key, source_epoch=epoch) for key in tier.keys]
    if table.num_rows == 0:
        return []
    rows = _SourceRows.of(table)
    partitions = _partitions(rows, tier.ids, len(states))
    return [states[g] for g in _add(rows, tier.ids, states, partitions).tolist()]


class _SourceRows(NamedTuple):
    """A batch's rows as aggregation reads them, with their source positions."""

    features: RowFeatures
    offsets: np.ndarray
    partitions: np.ndarray

    @classmethod
    def of(cls, table: pa.Table) -> _SourceRows:
        return cls(
            RowFeatures.of(table),
            table.column("source_offset").to_numpy(),
            table.column("source_partition").to_numpy(),
        )

    def subset(self, mask: np.ndarray) -> _SourceRows:
        return _SourceRows(self.features.subset(mask), self.offsets[mask], self.partitions[mask])


class TierGroups(NamedTuple):
    seconds: int
    keys: list[WindowKey]  # the distinct windows of this tier
    ids: np.ndarray  # per row, the index of its window in `keys`


class Assigned(NamedTuple):
    table: pa.Table  # the events
    tiers: tuple[TierGroups, ...]

    @property
    def keys(self) -> list[WindowKey]:
        return [key for tier in self.tiers for key in tier.keys]


def _assign(table: pa.Table, tier_seconds: Sequence[int]) -> Assigned:
    if table.num_rows == 0:
        return Assigned(
            table, tuple(TierGroups(s, [], np.empty(0, np.int64)) for s in tier_seconds)
        )
    millis = table.column("started_at").cast(pa.int64()).to_numpy()
    # The passes once (strings are the costly part), then each tier's windows as integers.
    passes = pc.dictionary_encode(row_keys(table.column("project_id"), table.column("pass_id")))
    names = [text.split(KEY_SEPARATOR) for text in passes.dictionary.to_pylist()]
    pass_ids = passes.indices.to_numpy().astype(np.int64)
    tiers = []
    for seconds in tier_seconds:
        window = millis // (seconds * 1000)
        low = int(window.min())
        span = int(window.max()) - low + 1
        windows, ids = distinct(pass_ids * span + (window - low), len(names) * span)
        pass_of, offset = np.divmod(windows, span)
        keys = [
            WindowKey(
                names[p][0], names[p][1], EPOCH + timedelta(seconds=(w + low) * seconds), seconds
            )
            for p, w in zip(pass_of.tolist(), offset.tolist(), strict=True)
        ]
        tiers.append(TierGroups(seconds, keys, ids.reshape(-1)))
    return Assigned(table, tuple(tiers))


def _partitions(rows: _SourceRows, gids: np.ndarray, n: int) -> np.ndarray:
    """Each of the `n` windows' source partition: any of its rows tells (a pass's rows
    share one)."""
    partitions = np.zeros(n, dtype=np.int64)
    partitions[gids] = rows.partitions
    return partitions


def _add(
    rows: _SourceRows, gids: np.ndarray, states: list[WindowState], partitions: np.ndarray
) -> np.ndarray:
    """Add `rows` (row i to `states[gids[i]]`; `partitions[g]`: window g's source
    partition, from `_partitions`); return the ids changed."""
    changed = add_rows([state.aggregate for state in states], gids, rows.features)
    if len(changed) == 0:
        return changed
    n = len(states)
    last_offset = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last_offset, gids, rows.offsets)
    for g in changed.tolist():
        states[g].source_partition = int(partitions[g])
        states[g].last_offset = max(states[g].last_offset, int(last_offset[g]))
    return changed
