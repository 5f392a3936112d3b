from __future__ import annotations

import uuid

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
