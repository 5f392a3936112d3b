"""The ingest journal on a real file system (no broker: `publish` is a function here)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from sentinel_usage.core.wire import Envelope
from sentinel_usage.ingest.journal import IngestJournal, JournalPolicy, read_segment


def envelope(n: int, events: int = 3) -> Envelope:
    return Envelope(f"SP-{n}", b'{"schema":"sentinel.usage.batch/1","events":[%d]}' % n, events)


class Broker:
    """Stands in for the broker's acknowledgement: one partition, offsets in order."""

    def __init__(self) -> None:
        self.received: list[Envelope] = []

    async def publish(self, envelopes: Sequence[Envelope]) -> list[tuple[int, int]]:
        start = len(self.received)
        self.received += envelopes
        return [(0, start + i) for i in range(len(envelopes))]


async def test_what_was_appended_is_replayed_by_the_next_life(tmp_path: Path) -> None:
    first = IngestJournal(tmp_path)
    await first.open()
    written = [envelope(n) for n in range(5)]
    # concurrent requests: one group commit, every one of them durable when it returns
    await asyncio.gather(*(first.append([e]) for e in written))
    await first.close()

    broker = Broker()
    second = IngestJournal(tmp_path)
    assert await second.replay(broker.publish) == 15
    assert sorted(broker.received) == sorted(written)


async def test_a_torn_last_record_ends_the_segment_and_the_rest_is_kept(tmp_path: Path) -> None:
    journal = IngestJournal(tmp_path)
    await journal.open()
    for n in range(3):
        await journal.append([envelope(n)])
    await journal.close()
    segment = tear_last_bytes(tmp_path, 5)  # a crash during the last write

    assert [e.pass_id for e in read_segment(segment)] == ["SP-0", "SP-1"]


def tear_last_bytes(directory: Path, count: int) -> Path:
    (segment,) = directory.glob("*.journal")
    segment.write_bytes(segment.read_bytes()[:-count])
    return segment


async def test_segments_go_once_sealed_published_and_committed(tmp_path: Path) -> None:
    journal = IngestJournal(tmp_path, JournalPolicy(segment_seconds=0))
    await journal.open()
    broker = Broker()
    for n in range(3):  # every append seals the segment before it (segment_seconds=0)
        envelopes = [envelope(n)]
        journal.published(await journal.append(envelopes), await broker.publish(envelopes))
    unpublished = await journal.append([envelope(9)])  # the broker never acknowledged it

    assert await journal.trim({0: 1}) == 1  # offset 0 committed: the first segment only
    assert await journal.trim({0: 3}) == 2
    assert unpublished.path.exists()  # kept for the next life's replay
    assert await journal.trim({0: 100}) == 0
    await journal.close()


async def test_an_append_to_a_closed_journal_fails_instead_of_waiting(tmp_path: Path) -> None:
    from sentinel_usage.ingest.journal import JournalError

    journal = IngestJournal(tmp_path)
    with pytest.raises(JournalError):
        await journal.append([envelope(1)])
