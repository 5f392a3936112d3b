"""UsageAggregate: the mergeable summary of a set of events (one window, or any range).

Definitions (the Usage tab's contract):
- a *request* is an `api_request` or an `error` event; `total_requests` counts them,
  `success_count` those that succeeded, `error_count` the rest;
- `token_generation` events are counted apart (`token_generations`, `token_failures`);
- latency (sum, count, sketch) and endpoint counts are over requests only.

No knowledge of Kafka, Faust or ClickHouse: initialise, add (a columnar batch into many
aggregates at once, `add_table`; one event is a batch of one), merge, result.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from sentinel_usage.core.columns import events_table
from sentinel_usage.core.events import UsageEvent
from sentinel_usage.core.kept import dumps_kept
from sentinel_usage.core.sketch import ZERO_KEY, LatencySketch, sketch_keys
from sentinel_usage.core.windows import EPOCH, QUARTER_HOUR, unix_millis

# What a request is, everywhere (the sink's per-pass metrics and alerts too).
REQUEST_TYPES: Final = frozenset({"api_request", "error"})
_REQUEST_TYPES: Final = pa.array(sorted(REQUEST_TYPES))


def requests_mask(activity_type: pa.Array | pa.ChunkedArray) -> pa.Array:
    """True for the rows that are requests (not token generations)."""
    mask = pc.is_in(activity_type, value_set=_REQUEST_TYPES)
    return mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask


@dataclass
class UsageAggregate:
    total_requests: int = 0
    success_count: int = 0
    error_count: int = 0
    token_generations: int = 0
    token_failures: int = 0
    latency_sum_ms: float = 0.0
    latency_count: int = 0
    latency_max_ms: float = 0.0
    sketch: LatencySketch = field(default_factory=LatencySketch)
    endpoint_counts: dict[str, int] = field(default_factory=dict)
    last_event_at: datetime | None = None

    def add(self, event: UsageEvent) -> None:
        """One event: the columnar add on a batch of one, so both are the same code."""
        add_table([self], np.zeros(1, dtype=np.int64), events_table([event]))

    def _add_counts(self, counts: _GroupCounts, g: int) -> None:
        if counts.requests[g]:
            self.total_requests += int(counts.requests[g])
            self.success_count += int(counts.successes[g])
            self.error_count += int(counts.requests[g] - counts.successes[g])
            self.latency_sum_ms += float(counts.latency_sum[g])
            self.latency_count += int(counts.requests[g])
            self.latency_max_ms = max(self.latency_max_ms, float(counts.latency_max[g]))
        self.token_generations += int(counts.tokens[g])
        self.token_failures += int(counts.token_failures[g])
        last = EPOCH + timedelta(milliseconds=int(counts.last_ms[g]))
        if self.last_event_at is None or last > self.last_event_at:
            self.last_event_at = last

    def _add_endpoint(self, endpoint: str, count: int) -> None:
        self.endpoint_counts[endpoint] = self.endpoint_counts.get(endpoint, 0) + count

    def merge(self, other: UsageAggregate) -> UsageAggregate:
        endpoints = dict(self.endpoint_counts)
        for endpoint, count in other.endpoint_counts.items():
            endpoints[endpoint] = endpoints.get(endpoint, 0) + count
        last = [t for t in (self.last_event_at, other.last_event_at) if t is not None]
        return UsageAggregate(
            total_requests=self.total_requests + other.total_requests,
            success_count=self.success_count + other.success_count,
            error_count=self.error_count + other.error_count,
            token_generations=self.token_generations + other.token_generations,
            token_failures=self.token_failures + other.token_failures,
            latency_sum_ms=self.latency_sum_ms + other.latency_sum_ms,
            latency_count=self.latency_count + other.latency_count,
            latency_max_ms=max(self.latency_max_ms, other.latency_max_ms),
            sketch=self.sketch.merge(other.sketch),
            endpoint_counts=endpoints,
            last_event_at=max(last) if last else None,
        )

    # -- results ---------------------------------------------------------------

    @property
    def success_rate(self) -> float | None:
        return self.success_count / self.total_requests if self.total_requests else None

    @property
    def error_rate(self) -> float | None:
        return self.error_count / self.total_requests if self.total_requests else None

    @property
    def avg_latency_ms(self) -> float | None:
        return self.latency_sum_ms / self.latency_count if self.latency_count else None

    @property
    def p95_latency_ms(self) -> float | None:
        return self.latency_percentile_ms(95)

    def latency_percentile_ms(self, percentile: int) -> float | None:
        """The `percentile`-th percentile of the latencies (see core/sketch.py for the
        rank convention and the 1% bound)."""
        return self.sketch.quantile(percentile / 100)

    @property
    def unique_endpoints(self) -> int:
        return sum(1 for count in self.endpoint_counts.values() if count > 0)

    # -- state form (Faust table values) ----------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "tr": self.total_requests,
            "sc": self.success_count,
            "ec": self.error_count,
            "tg": self.token_generations,
            "tf": self.token_failures,
            "ls": self.latency_sum_ms,
            "lc": self.latency_count,
            "lm": self.latency_max_ms,
            "sz": self.sketch.zero_count,
            # (key, count) pairs: orjson writes and reads them without a Python loop
            "sb": list(self.sketch.bins.items()),
            "ep": self.endpoint_counts,
            "le": unix_millis(self.last_event_at) if self.last_event_at else None,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> UsageAggregate:
        last = state.get("le")
        return cls(
            total_requests=state["tr"],
            success_count=state["sc"],
            error_count=state["ec"],
            token_generations=state["tg"],
            token_failures=state["tf"],
            latency_sum_ms=state["ls"],
            latency_count=state["lc"],
            latency_max_ms=state["lm"],
            sketch=LatencySketch(_bins(state["sb"]), state["sz"]),
            endpoint_counts=dict(state["ep"]),
            last_event_at=EPOCH + timedelta(milliseconds=last) if last is not None else None,
        )


def _bins(stored: list[list[int]] | dict[str, int]) -> Iterable[tuple[int, int]]:
    """Sketch bins as stored: (key, count) pairs, or (before) a mapping of text keys."""
    if isinstance(stored, dict):
        return [(int(k), v) for k, v in stored.items()]
    return stored  # type: ignore[return-value]


class _GroupCounts(NamedTuple):
    """Per group of a batch: what `UsageAggregate._add_counts` adds."""

    requests: np.ndarray
    successes: np.ndarray
    tokens: np.ndarray
    token_failures: np.ndarray
    latency_sum: np.ndarray
    latency_max: np.ndarray
    last_ms: np.ndarray


class RowFeatures(NamedTuple):
    """What aggregation reads of each row of a batch, computed once per batch however
    many groupings (rollup tiers) it is added to."""

    request: np.ndarray  # bool: a request (not a token generation)
    success: np.ndarray  # bool
    duration: np.ndarray  # float64, ms
    started_ms: np.ndarray  # int64, epoch ms
    sketch_key: np.ndarray  # int64: the latency sketch's key (ZERO_KEY: counted as zero)
    endpoint: np.ndarray  # int: index into `endpoint_names`
    endpoint_names: list[str]

    @classmethod
    def of(cls, table: pa.Table) -> RowFeatures:
        """The features of `table`'s rows (core.columns.EVENT_SCHEMA's columns)."""
        request = requests_mask(table.column("activity_type")).to_numpy(zero_copy_only=False)
        duration = table.column("duration_ms").to_numpy()
        keys = np.full(len(duration), ZERO_KEY, dtype=np.int64)
        keys[request] = sketch_keys(duration[request])
        endpoints = pc.dictionary_encode(table.column("endpoint")).combine_chunks()
        return cls(
            request=request,
            success=table.column("success").to_numpy(zero_copy_only=False),
            duration=duration,
            started_ms=table.column("started_at").cast(pa.int64()).to_numpy(),
            sketch_key=keys,
            endpoint=endpoints.indices.to_numpy(),
            endpoint_names=endpoints.dictionary.to_pylist(),
        )

    def subset(self, mask: np.ndarray) -> RowFeatures:
        """The features of the rows where `mask` is true."""
        return self._replace(**{name: getattr(self, name)[mask] for name in _ROW_ARRAYS})


_ROW_ARRAYS: Final = ("request", "success", "duration", "started_ms", "sketch_key", "endpoint")


def add_table(
    aggregates: Sequence[UsageAggregate], groups: np.ndarray, table: pa.Table
) -> np.ndarray:
    """Add each row of `table` (core.columns.EVENT_SCHEMA's columns) to the aggregate
    `aggregates[groups[row]]`; return the indices of the aggregates that changed."""
    if table.num_rows == 0:
        return np.empty(0, dtype=np.int64)
    return add_rows(aggregates, groups, RowFeatures.of(table))


def add_rows(
    aggregates: Sequence[UsageAggregate], groups: np.ndarray, rows: RowFeatures
) -> np.ndarray:
    """`add_table` on rows whose features are already computed."""
    n = len(aggregates)
    if len(groups) == 0:
        return np.empty(0, dtype=np.int64)
    request, success, duration = rows.request, rows.success, rows.duration

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(groups[mask], minlength=n)

    latency_max = np.full(n, -np.inf)
    np.maximum.at(latency_max, groups[request], duration[request])
    last_ms = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(last_ms, groups, rows.started_ms)
    counts = _GroupCounts(
        requests=count(request),
        successes=count(request & success),
        tokens=count(~request),
        token_failures=count(~request & ~success),
        latency_sum=np.bincount(groups[request], weights=duration[request], minlength=n),
        latency_max=latency_max,
        last_ms=last_ms,
    )
    changed = np.flatnonzero(np.bincount(groups, minlength=n))
    for g in changed.tolist():
        aggregates[g]._add_counts(counts, g)

    request_groups = groups[request]
    keys = rows.sketch_key[request]
    zero = keys == ZERO_KEY
    zero_counts = np.bincount(request_groups[zero], minlength=n)
    for g in np.flatnonzero(zero_counts).tolist():
        aggregates[g].sketch.zero_count += int(zero_counts[g])
    # Each group's keys as one slice of a list sorted by group, counted in C.
    # (numpy's stable sort of 16-bit integers is a radix sort: a tenth of the 64-bit one's time
    # for a 20,000-row batch)
    order = np.argsort(request_groups[~zero].astype(_narrowest(n)), kind="stable")
    sorted_groups = request_groups[~zero][order]
    sorted_keys = keys[~zero][order].tolist()
    starts = np.flatnonzero(np.diff(sorted_groups, prepend=-1))
    ends = np.append(starts[1:], len(sorted_groups))[: len(starts)]  # none: no slices
    for g, a, b in zip(sorted_groups[starts].tolist(), starts.tolist(), ends.tolist(), strict=True):
        aggregates[g].sketch.add_bucketed(sorted_keys[a:b])

    names = rows.endpoint_names
    for g, index, c in _pair_counts(request_groups, rows.endpoint[request]):
        aggregates[g]._add_endpoint(names[index], c)
    return changed


def _pair_counts(groups: np.ndarray, values: np.ndarray) -> list[tuple[int, int, int]]:
    """(group, value, occurrences) for each distinct pair."""
    if len(groups) == 0:
        return []
    low = int(values.min())
    span = int(values.max()) - low + 1
    combined, counts = distinct_counts(groups * span + (values - low), int(groups.max() + 1) * span)
    group, value = np.divmod(combined, span)
    return list(zip(group.tolist(), (value + low).tolist(), counts.tolist(), strict=True))


# `distinct` and `distinct_counts` use a table of slots up to this many slots a value, and
# np.unique's sort beyond (the table's memory and scan grow with the bound, not the values).
_TABLE_SLOTS_PER_VALUE = 4


def distinct(values: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(values, return_inverse=True)` of non-negative integers below `bound`,
    through a table of `bound` slots when that is not much longer than `values` (no sort:
    np.unique's were a tenth of the windows' time in the stream bench)."""
    if bound > _TABLE_SLOTS_PER_VALUE * len(values):
        return np.unique(values, return_inverse=True)
    present = np.zeros(bound, dtype=bool)
    present[values] = True
    slot = np.cumsum(present) - 1
    return np.flatnonzero(present), slot[values]


def distinct_counts(values: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(values, return_counts=True)` of non-negative integers below `bound` (as
    `distinct`)."""
    if bound > _TABLE_SLOTS_PER_VALUE * len(values):
        return np.unique(values, return_counts=True)
    counts = np.bincount(values, minlength=bound)
    present = np.flatnonzero(counts)
    return present, counts[present]


def _narrowest(groups: int) -> type[np.integer]:
    return np.int16 if groups <= np.iinfo(np.int16).max else np.int64


@dataclass
class WindowState:
    """One pass's tumbling window: its aggregate and the source position last applied.

    Events of a pass all come from one source partition (the topic is keyed by
    pass_id) in offset order, so `last_offset` tells exactly which records this
    window already holds: a redelivered record is recognised and skipped. Offsets
    mean something only within one broker's life (`source_epoch`): the embedded
    broker starts from offset 0 at every start.
    """

    project_id: str
    pass_id: str
    window_start: datetime
    window_seconds: int
    aggregate: UsageAggregate = field(default_factory=UsageAggregate)
    source_partition: int = -1
    last_offset: int = -1
    source_epoch: str = ""

    @property
    def key(self) -> WindowKey:
        return WindowKey(self.project_id, self.pass_id, self.window_start, self.window_seconds)

    def to_bytes(self) -> bytes:
        return dumps_kept(
            {
                "p": self.project_id,
                "s": self.pass_id,
                "w": unix_millis(self.window_start),
                "n": self.window_seconds,
                "a": self.aggregate.to_state(),
                "sp": self.source_partition,
                "o": self.last_offset,
                "ep": self.source_epoch,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> WindowState:
        raw = orjson.loads(data)
        return cls(
            project_id=raw["p"],
            pass_id=raw["s"],
            window_start=EPOCH + timedelta(milliseconds=raw["w"]),
            window_seconds=raw["n"],
            aggregate=UsageAggregate.from_state(raw["a"]),
            source_partition=raw["sp"],
            last_offset=raw["o"],
            source_epoch=raw.get("ep", ""),
        )


class WindowKey(NamedTuple):
    project_id: str
    pass_id: str
    window_start: datetime
    window_seconds: int

    def encode(self) -> bytes:
        """The window's key in the worker's store. The finest tier's keys (any window
        shorter than a quarter of an hour) keep the form they had before the coarser
        tiers existed, so that a changelog written then is still read as the same keys."""
        key = f"{self.project_id}\x1f{self.pass_id}\x1f{unix_millis(self.window_start)}"
        if self.window_seconds >= QUARTER_HOUR:
            key += f"\x1f{self.window_seconds}"
        return key.encode()

    @staticmethod
    def span_millis(encoded: bytes, finest_seconds: int) -> tuple[int, int]:
        """The window of an `encode`d key as (start in Unix ms, length in seconds), read
        from the key alone (a key without a size is the finest tier's, of
        `finest_seconds`): the store is searched by time without decoding its values."""
        fields = encoded.split(b"\x1f")
        return int(fields[2]), int(fields[3]) if len(fields) > 3 else finest_seconds
