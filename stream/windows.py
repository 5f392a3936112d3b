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
from typing import Protocol

from sentinel_usage.core.aggregate import WindowKey, WindowState
from sentinel_usage.core.events import UsageEvent
from sentinel_usage.core.windows import window_start
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
    def __init__(self, store: WindowStore, policy: WindowPolicy = WindowPolicy()) -> None:
        self._store = store
        self._policy = policy

    def keys_of(self, events: Sequence[UsageEvent]) -> set[WindowKey]:
        return {self._key(e) for e in events}

    def missing(self, keys: Iterable[WindowKey]) -> list[WindowKey]:
        """Keys whose state must be loaded from the rollups before `apply`."""
        return [k for k in keys if self._store.get(k.encode()) is None]

    def apply(
        self,
        items: Sequence[tuple[UsageEvent, SourceRecord]],
        loaded: dict[WindowKey, WindowState],
    ) -> list[WindowState]:
        """Add each event to its window unless its record was applied before; write
        the changed windows to the store and return them."""
        states: dict[WindowKey, WindowState] = {}
        watermarks: dict[WindowKey, int] = {}
        for event, source in items:
            key = self._key(event)
            state = states.get(key)
            if state is None:
                state = self._state(key, loaded)
                states[key] = state
                watermarks[key] = (
                    state.last_offset if state.source_partition == source.partition else -1
                )
            if source.offset <= watermarks[key]:
                continue  # a redelivered record: already in this window
            state.aggregate.add(event)
            state.source_partition = source.partition
            state.last_offset = max(state.last_offset, source.offset)
        changed = [s for k, s in states.items() if s.last_offset > watermarks[k]]
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

    def _key(self, event: UsageEvent) -> WindowKey:
        return WindowKey(
            event.project_id, event.pass_id, window_start(event.started_at, self._policy.size)
        )

    def _state(self, key: WindowKey, loaded: dict[WindowKey, WindowState]) -> WindowState:
        stored = self._store.get(key.encode())
        if stored is not None:
            return WindowState.from_bytes(stored)
        if key in loaded:
            return loaded[key]
        return WindowState(*key, window_seconds=int(self._policy.size.total_seconds()))


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
