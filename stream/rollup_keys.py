"""RollupKeys: which windows the rollups may hold, so that a window new to the store is
looked up in the rollups only when it may be there.

A lookup (`RollupStore.load`) costs ~30 ms whatever it finds (chDB 26.9 analysing the
keys asked, not reading rows: measured with 230 keys, none there), and a batch opens a
few hundred windows nobody has written (the stream's minute moving on, late events):
that lookup was a fifth of a batch's preparation in the stream bench.

The index holds every window key of the rollups whose window ends at or after `since`:
those the rollups held when the partitions were assigned (written by a previous owner,
a previous life, a rebuild or a migration), and each one this worker has changed since
(added as it enters the store). The rollups are written only by the partition's owner,
so a window ending at or after `since` that is not here is certainly not in them; one
ending before `since` may be, and is looked up. `since` moves on with the clock, and the
keys behind it are forgotten, so the index holds a few hours of windows, not all.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sentinel_usage.core.aggregate import WindowKey
from sentinel_usage.core.windows import unix_millis

_BUCKET_MS = 3_600_000  # keys are kept by the hour their window ends in


class RollupKeys:
    def __init__(self, since: datetime, keys: Iterable[WindowKey] = ()) -> None:
        self.since = since
        self._buckets: dict[int, set[WindowKey]] = {}
        self.add(keys)

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._buckets.values())

    def may_hold(self, key: WindowKey) -> bool:
        """False only when the rollups certainly do not hold `key`."""
        end = _end_millis(key)
        if end < unix_millis(self.since):
            return True
        return key in self._buckets.get(end // _BUCKET_MS, ())

    def add(self, keys: Iterable[WindowKey]) -> None:
        """Keys the rollups may hold from now on (windows entering the store)."""
        for key in keys:
            self._buckets.setdefault(_end_millis(key) // _BUCKET_MS, set()).add(key)

    def forget_before(self, since: datetime) -> None:
        """Move `since` on (never back): the keys of windows ending before it go."""
        if since <= self.since:
            return
        self.since = since
        first = unix_millis(since) // _BUCKET_MS  # a bucket wholly before `since` goes
        for bucket in [b for b in self._buckets if b < first]:
            del self._buckets[bucket]


def _end_millis(key: WindowKey) -> int:
    return unix_millis(key.window_start + timedelta(seconds=key.window_seconds))
