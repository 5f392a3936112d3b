from __future__ import annotations

import math

import numpy as np
import pytest
from ddsketch.mapping import LogarithmicMapping
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel_usage.core.sketch import (
    MIN_INDEXABLE_MS,
    RELATIVE_ACCURACY,
    ZERO_KEY,
    LatencySketch,
    bucket_key,
    bucket_value,
    sketch_keys,
)

# ddsketch's own mapping: the reference our keys are checked against.
MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)

durations = st.floats(min_value=0, max_value=86_400_000, allow_nan=False, allow_infinity=False)
samples = st.lists(durations, min_size=1, max_size=400)


def exact(values: list[float], q: float) -> float:
    """The value at rank floor(q * (n - 1)) of the sorted values (the sketch's rank)."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


@given(samples, st.sampled_from([0.0, 0.5, 0.9, 0.95, 0.99, 1.0]))
@settings(max_examples=300)
def test_quantiles_are_within_one_percent(values: list[float], q: float) -> None:
    truth = exact(values, q)
    estimate = LatencySketch.of(values).quantile(q)
    assert estimate is not None
    if truth < 1e-3:
        assert estimate == 0.0
    else:
        assert abs(estimate - truth) <= 0.01 * truth


@given(samples, samples, samples)
def test_merge_is_associative_and_commutative(
    a: list[float], b: list[float], c: list[float]
) -> None:
    sa, sb, sc = LatencySketch.of(a), LatencySketch.of(b), LatencySketch.of(c)
    assert sa.merge(sb) == sb.merge(sa)
    assert sa.merge(sb).merge(sc) == sa.merge(sb.merge(sc))
    assert sa.merge(sb).merge(sc) == LatencySketch.of(a + b + c)


@given(samples)
def test_merge_leaves_its_operands_alone(values: list[float]) -> None:
    sketch = LatencySketch.of(values)
    before = LatencySketch(sketch.bins, sketch.zero_count)
    sketch.merge(LatencySketch.of([1.0, 2.0]))
    assert sketch == before


def test_empty_and_zero() -> None:
    assert LatencySketch().quantile(0.95) is None
    assert LatencySketch.of([0.0, 0.0, 5.0]).quantile(0.5) == 0.0
    with pytest.raises(ValueError, match="quantile"):
        LatencySketch().quantile(1.5)


def test_vectorised_keys_are_the_mapping_keys() -> None:
    rng = np.random.default_rng(7)
    boundaries = [MAPPING.value(k) for k in range(-800, 2500)]
    values = np.concatenate(
        [
            rng.lognormal(4.5, 2.5, 50_000),
            rng.random(500) * 2e-3,
            [0.0, 1e-3, 86_400_000.0],
            np.array(boundaries),
            np.nextafter(boundaries, 0),
            np.nextafter(boundaries, np.inf),
        ]
    )
    expected = [MAPPING.key(float(v)) if v >= MIN_INDEXABLE_MS else ZERO_KEY for v in values]
    assert sketch_keys(values).tolist() == expected


@given(st.floats(min_value=MIN_INDEXABLE_MS, max_value=1e12, allow_nan=False))
@settings(max_examples=2_000)
def test_our_mapping_is_ddsketch_s(value: float) -> None:
    assert bucket_key(value) == MAPPING.key(value)
    key = bucket_key(value)
    assert bucket_value(key) == pytest.approx(MAPPING.value(key), rel=1e-12)


def test_keys_added_in_bulk_are_keys_added_one_by_one() -> None:
    values = np.random.default_rng(3).lognormal(4.0, 2.0, 5_000)
    values[:50] = 0.0
    keys = sketch_keys(values)
    bulk = LatencySketch(zero_count=int((keys == ZERO_KEY).sum()))
    bulk.add_bucketed(keys[keys != ZERO_KEY].tolist())
    assert bulk == LatencySketch.of(values.tolist())
