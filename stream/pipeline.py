"""SinkPipeline: the next batch prepared while the last one is written, acks in order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sentinel_usage.stream.batcher import source_records
from sentinel_usage.stream.sink import PreparedBatch, UsageSink

Ack = Callable[[Sequence[Any]], Awaitable[None]]


class SinkPipeline:
    """Batch N+1 is decoded, deduplicated and applied to its windows (`UsageSink.prepare`,
    on the event loop and Python's one core) while batch N's rows and rollups are
    inserted (`UsageSink.finish`, in ClickHouse's threads, without the GIL); N is acked
    once written, before N+1's writing begins: acks keep the batches' order, and at
    most one batch is in flight. The sink keeps the in-flight batch's events and windows
    apart (UsageSink.prepare), so the two overlap exactly as if one came after the other.

    `submit` returns once the batch is prepared and its writing started (and the one
    before written and acked); `close` cancels a writing in progress (the batch is not
    acked: its records come again and are deduplicated)."""

    def __init__(self, sink: UsageSink, ack: Ack) -> None:
        self._sink = sink
        self._ack = ack
        self._writing: asyncio.Task[None] | None = None
        self._preparing = False

    @property
    def busy(self) -> bool:
        """A batch is being prepared or written."""
        return self._preparing or (self._writing is not None and not self._writing.done())

    async def submit(self, batch: Sequence[Any]) -> None:
        self._preparing = True
        try:
            prepared = await self._sink.prepare_until_done(source_records(batch))
            await self.drain()
            self._writing = asyncio.create_task(self._write(prepared, batch), name="sink-write")
        finally:
            self._preparing = False

    async def drain(self) -> None:
        """Return when the batch being written is written and acked."""
        if self._writing is not None:
            writing, self._writing = self._writing, None
            await writing

    async def close(self) -> None:
        if self._writing is not None:
            self._writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writing
            self._writing = None

    async def _write(self, prepared: PreparedBatch, batch: Sequence[Any]) -> None:
        await self._sink.finish_until_done(prepared)
        await self._ack(batch)
