"""The gateway's event ids: canonical UUID text, unique, a fresh prefix in a forked
child and after the counter's span."""

from __future__ import annotations

import itertools
import os
import uuid

from sentinel_usage.core import event_ids
from sentinel_usage.core.event_ids import EventIds


def test_ids_are_canonical_version_4_uuids_and_unique() -> None:
    ids = EventIds()
    drawn = [ids.next() for _ in range(10_000)]
    assert len(set(drawn)) == len(drawn)
    for text in drawn[:100]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # lower-case, hyphenated: what the worker stores
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_two_generators_do_not_share_a_prefix() -> None:
    assert EventIds().next()[:24] != EventIds().next()[:24]


def test_the_counter_s_end_draws_a_new_prefix() -> None:
    ids = EventIds()
    first = ids.next()
    ids._counter = itertools.count(event_ids._COUNTER_SPAN)  # the span used up
    after = ids.next()
    assert after[:24] != first[:24]
    assert after.endswith("000000000000")


def test_a_forked_child_draws_its_own_prefix() -> None:
    ids = EventIds()
    parent = ids.next()[:24]
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write, ids.next()[:24].encode())
        os._exit(0)
    os.close(write)
    seen = os.read(read, 64).decode()
    os.waitpid(child, 0)
    assert seen != parent
