from __future__ import annotations

import random
import uuid

import numpy as np
import pyarrow as pa

from sentinel_usage.core.idfilter import EventIdFilter


def ids(n: int) -> pa.Array:
    return pa.array([str(uuid.uuid4()) for _ in range(n)])


def test_no_false_negatives_and_few_false_positives() -> None:
    seen, unseen = ids(100_000), ids(100_000)
    projects = pa.array(["proj-a"] * 100_000)
    bloom = EventIdFilter(capacity=100_000)
    for start in range(0, 100_000, 30_000):  # added batch by batch, as the sink does
        bloom.add(projects.slice(start, 30_000), seen.slice(start, 30_000))

    assert bloom.may_contain(projects, seen).all()
    false_positives = bloom.may_contain(projects, unseen).mean()
    assert false_positives < 0.002, false_positives


def test_the_identity_is_scoped_by_project() -> None:
    same = ids(10_000)
    bloom = EventIdFilter()
    bloom.add(pa.array(["proj-a"] * 10_000), same)
    assert bloom.may_contain(pa.array(["proj-b"] * 10_000), same).mean() < 0.01


def test_sliced_and_chunked_columns_hash_as_whole_ones() -> None:
    column = ids(1_000)
    projects = pa.array(["p"] * 1_000)
    bloom = EventIdFilter()
    bloom.add(projects.slice(500), column.slice(500))
    chunked = pa.chunked_array([column.slice(0, 700), column.slice(700)])
    hits = bloom.may_contain(
        pa.chunked_array([projects.slice(0, 700), projects.slice(700)]), chunked
    )
    assert hits[500:].all()
    assert hits[:500].mean() < 0.01
    assert not bloom.full


def test_fingerprints_are_equal_for_repeats_and_tell_distinct_ids_apart() -> None:
    """What UsageSink.drop_known relies on to skip its exact repeat check."""
    bloom = EventIdFilter()
    rng = random.Random(3)
    events = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(50_000)]
    projects = ["proj-a", "proj-b"] * 25_000
    prints = bloom.slots(pa.array(projects), pa.array(events)).fingerprints()
    assert len(np.unique(prints)) == 50_000
    again = bloom.slots(pa.array(projects[:2] * 2), pa.array(events[:2] * 2)).fingerprints()
    assert again.tolist() == [prints[0], prints[1], prints[0], prints[1]]
    # The same id in another project is another identity.
    other = bloom.slots(pa.array(["proj-b"]), pa.array(events[:1])).fingerprints()
    assert other[0] != prints[0]
