"""Where the worker stands on each events partition it holds: the consumer-lag metric,
and the guard that resumes a partition whose records were never handed to the agent."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import faust
import structlog

from sentinel_usage.core import topics
from sentinel_usage.stream.batcher import SinkBatcher, buffered
from sentinel_usage.stream.metrics import CONSUMER_LAG, STREAM_RESUMED
from sentinel_usage.stream.pipeline import SinkPipeline

log = structlog.get_logger(__name__)


@dataclass
class SinkProgress:
    """What the stall guard reads of the sink agent."""

    stream: Any = None
    pipeline: SinkPipeline | None = None

    @property
    def busy(self) -> bool:
        """A batch is being prepared or written."""
        return self.pipeline is not None and self.pipeline.busy


STALL_SECONDS = 10.0


class StallGuard:
    """Which partitions are stalled: records past the committed offset, the same
    committed offset for `after` seconds, while nothing is buffered for the agent and
    no batch is in process. Healthy, the committed offset moves one commit interval
    after a batch, so `after` must be several commit intervals."""

    def __init__(self, after: float) -> None:
        self._after = after
        self._since: dict[int, tuple[int | None, float]] = {}

    def check(
        self,
        partition: int,
        committed: int | None,
        highwater: int | None,
        waiting: bool,
        now: float,
    ) -> bool:
        """`waiting`: events buffered for the agent or a batch in process."""
        if waiting or highwater is None or (committed or 0) >= highwater:
            self._since.pop(partition, None)
            return False
        first = self._since.get(partition)
        if first is None or first[0] != committed:
            self._since[partition] = (committed, now)
            return False
        if now - first[1] < self._after:
            return False
        del self._since[partition]
        return True


async def resume_stalled(
    app: faust.App, progress: SinkProgress, batcher: SinkBatcher, guard: StallGuard
) -> None:
    """Seek a stalled partition back to its committed offset: a redelivery, which the
    sink deduplicates. Seen once in a full test run: after a restart that restored
    changelog state, Faust started fetching before it sought the stream partitions
    to their committed offsets, and the one record waiting was never handed to the
    agent (nothing buffered, nothing committed) until the next restart."""
    if progress.stream is None:
        return
    waiting = progress.busy or batcher.pending > 0 or buffered(progress.stream) > 0
    now = time.monotonic()
    for tp, done, highwater in event_positions(app):
        if guard.check(tp.partition, done, highwater, waiting, now):
            log.warning("stream_stalled_resuming", partition=tp.partition, committed=done)
            STREAM_RESUMED.inc()
            await app.consumer.seek(tp, done or 0)


async def update_lag(app: faust.App) -> None:
    for tp, done, highwater in event_positions(app):
        # None until the first fetch of the partition returned (measured: a None
        # here once killed ingest and API together, issue 11).
        if highwater is not None:
            CONSUMER_LAG.labels(partition=str(tp.partition)).set(max(0, highwater - (done or 0)))


def event_positions(app: faust.App) -> list[tuple[Any, int | None, int | None]]:
    """(partition, committed offset, high-water mark) of each events partition this
    worker holds; either may be None (nothing committed, not fetched yet). Faust keeps
    the committed offsets in a private map: reading it is harmless, re-check on upgrade."""
    consumer = app.consumer
    committed = getattr(consumer, "_committed_offset", {})
    return [
        (tp, committed.get(tp), consumer.highwater(tp))
        for tp in consumer.assignment()
        if tp.topic == topics.EVENTS
    ]
