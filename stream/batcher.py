"""Sink batches of a useful size from Faust's takes, and the records they hold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sentinel_usage.stream.decode import SourceRecord


class SinkBatcher:
    """Joins Faust's takes into sink batches of a useful size.

    A take is `sink_batch_messages` messages or what came within
    `sink_batch_seconds`. Envelopes from the HTTP ingest may hold only a few
    events each (one per pass of a request), and every sink batch costs a few
    ClickHouse round trips (~15 ms): so while takes come back full, they are
    joined until the batch holds `max_bytes` of messages or `max_messages`;
    a take that is not full (the stream is keeping up) goes at once.
    """

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._pending: list[Any] = []
        self._bytes = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def drop(self, partitions: set[int]) -> int:
        """Forget what is pending from `partitions` (revoked: not ours to write or
        ack any more); return how many messages were dropped."""
        kept = [e for e in self._pending if e.message.partition not in partitions]
        dropped = len(self._pending) - len(kept)
        self._pending = kept
        self._bytes = sum(len(event.message.value or b"") for event in kept)
        return dropped

    def add(self, taken: Sequence[Any], more_waiting: bool) -> list[Any]:
        """The batch to process now (empty: keep taking)."""
        self._pending.extend(taken)
        self._bytes += sum(len(event.message.value or b"") for event in taken)
        if (
            more_waiting
            and self._bytes < self._max_bytes
            and len(self._pending) < self._max_messages
        ):
            return []
        batch, self._pending, self._bytes = self._pending, [], 0
        return batch


def buffered(stream: Any) -> int:
    """Events Faust has read ahead for this agent and not yet handed out (the queue of
    the agent's channel clone: faust.channels.Channel.queue)."""
    return int(stream.channel.queue.qsize())


def source_records(batch: Sequence[Any]) -> list[SourceRecord]:
    return [
        SourceRecord(
            topic=event.message.topic,
            partition=event.message.partition,
            offset=event.message.offset,
            key=event.message.key,
            value=event.message.value,
        )
        for event in batch
    ]
