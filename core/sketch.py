"""LatencySketch: a mergeable quantile sketch with a relative-error guarantee.

DDSketch-style logarithmic buckets: a value v lands in bucket ceil(log_gamma(v)), and
every value of a bucket is within `RELATIVE_ACCURACY` of the bucket's representative
value. The mapping is ddsketch's `LogarithmicMapping` computed here, the same keys
(tests/unit/core/test_sketch.py checks them against ddsketch's own `key`). Merging adds
bucket counts, so merging is exact, associative and commutative: any range is the merge
of its minute windows, never an average of percentiles.

Quantile definition: the value at rank floor(q * (n - 1)) of the sorted values
("lower" interpolation), the rank ddsketch itself uses.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Final

import numpy as np

# Half of the 1% the product promises, so that rank conventions and float
# rounding never push an answer over it.
RELATIVE_ACCURACY: Final = 0.005
_GAMMA_MANTISSA: Final = 2 * RELATIVE_ACCURACY / (1 - RELATIVE_ACCURACY)
GAMMA: Final = 1 + _GAMMA_MANTISSA
# Keys per doubling: log_gamma(v) = log2(v) * KEYS_PER_DOUBLING (ddsketch's form, so that the
# float rounding, and so the keys, are its own).
KEYS_PER_DOUBLING: Final = 1 / math.log1p(_GAMMA_MANTISSA) * math.log(2)
# Durations below a microsecond are counted as zero.
MIN_INDEXABLE_MS: Final = 1e-3
# What `sketch_keys` gives for a value counted as zero.
ZERO_KEY: Final = np.iinfo(np.int64).min


def bucket_key(value_ms: float) -> int:
    """The bucket of a value (at least MIN_INDEXABLE_MS)."""
    return math.ceil(math.log(value_ms, 2) * KEYS_PER_DOUBLING)


def bucket_value(key: int) -> float:
    """The bucket's representative value: within RELATIVE_ACCURACY of all its values."""
    return math.pow(2.0, key / KEYS_PER_DOUBLING) * (2.0 / (1 + GAMMA))


def sketch_keys(values_ms: np.ndarray) -> np.ndarray:
    """`bucket_key` of each value (ZERO_KEY below MIN_INDEXABLE_MS), vectorised.

    numpy's log may differ from the C library's by an ulp, which matters only where
    log_gamma(v) is within rounding of an integer (a bucket boundary): those few values
    are recomputed one by one, so every key is the one `LatencySketch.add` gives.
    """
    keys = np.full(len(values_ms), ZERO_KEY, dtype=np.int64)
    indexable = values_ms >= MIN_INDEXABLE_MS
    values = values_ms[indexable]
    exact = np.log(values) / math.log(2) * KEYS_PER_DOUBLING
    computed = np.ceil(exact).astype(np.int64)
    close = np.abs(exact - np.rint(exact)) < 1e-6
    if close.any():
        computed[close] = [bucket_key(float(v)) for v in values[close]]
    keys[indexable] = computed
    return keys


class LatencySketch:
    __slots__ = ("bins", "zero_count")

    def __init__(
        self,
        bins: Mapping[int, int] | Iterable[tuple[int, int]] | None = None,
        zero_count: int = 0,
    ) -> None:
        # A Counter: `add_bucketed` counts a batch's keys into it in C (Counter.update
        # of an iterable), which per key in Python was a quarter of the stream's time.
        # Filled by dict.update (C), from a mapping or from (key, count) pairs.
        self.bins: Counter[int] = Counter()
        if bins:
            dict.update(self.bins, bins)
        self.zero_count = zero_count

    @property
    def count(self) -> int:
        return self.zero_count + sum(self.bins.values())

    def add(self, value_ms: float, count: int = 1) -> None:
        if value_ms < MIN_INDEXABLE_MS:
            self.zero_count += count
            return
        key = bucket_key(value_ms)
        self.bins[key] = self.bins.get(key, 0) + count

    def add_bucketed(self, keys: Iterable[int]) -> None:
        """Add one value for each key of `keys` (`sketch_keys`, none of them ZERO_KEY)."""
        self.bins.update(keys)

    def merge(self, other: LatencySketch) -> LatencySketch:
        """A new sketch holding both (neither operand changes)."""
        merged = LatencySketch(self.bins, self.zero_count + other.zero_count)
        for key, count in other.bins.items():
            merged.bins[key] = merged.bins.get(key, 0) + count
        return merged

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 <= q <= 1), or None when the sketch is empty."""
        if not 0 <= q <= 1:
            raise ValueError(f"quantile must be in [0, 1], got {q}")
        total = self.count
        if total == 0:
            return None
        rank = q * (total - 1)
        if rank < self.zero_count:
            return 0.0
        running = self.zero_count
        for key in sorted(self.bins):
            running += self.bins[key]
            if running > rank:
                return bucket_value(key)
        return bucket_value(max(self.bins))  # pragma: no cover - float rounding only

    @classmethod
    def of(cls, values: Iterable[float]) -> LatencySketch:
        sketch = cls()
        for value in values:
            sketch.add(value)
        return sketch

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LatencySketch)
            and self.zero_count == other.zero_count
            and {k: v for k, v in self.bins.items() if v}
            == {k: v for k, v in other.bins.items() if v}
        )

    def __repr__(self) -> str:
        return f"LatencySketch(count={self.count}, buckets={len(self.bins)})"
