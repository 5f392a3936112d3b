"""SinkPipeline: four batches at once, each at its own step, acks in order."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sentinel_usage.stream.batcher import source_records
from sentinel_usage.stream.decode import DecodedBatch
from sentinel_usage.stream.sink import PreparedBatch, UsageSink

Ack = Callable[[Sequence[Any]], Awaitable[None]]


class SinkPipeline:
    """Batches N+2 and N+3 are decoded (`UsageSink.decode`, in threads: Arrow's JSON
    reader and compute kernels, mostly without the GIL) while batch N+1 is deduplicated
    and applied to its windows (`UsageSink.prepare_decoded`, on the event loop) and batch
    N's rows and rollups are written (`UsageSink.finish`, in ClickHouse's threads).
    Decoding touches no state, so it may run ahead; preparation and writing each take one
    batch at a time, in order: N is acked once written, before N+1's writing begins, and
    N+1 is prepared after N was. The sink keeps the in-flight batch's events and windows
    apart (UsageSink.prepare), so the steps overlap exactly as if one came after the
    other.

    `submit` returns once the batch's decoding started and the batch `ahead` before it is
    prepared. Two ahead, not one: the take of the next batch runs on the event loop too,
    and with one ahead it waited for the preparation's CPU-bound stretch, so the next
    decoding began only when that preparation awaited its changelog flush (measured in
    the stream bench: decoding then overlapped the flush, not the work). `drain` waits for
    all of them to be written and acked; `close` cancels what is in progress (those
    batches are not acked: their records come again and are deduplicated)."""

    def __init__(self, sink: UsageSink, ack: Ack, ahead: int = 2) -> None:
        self._sink = sink
        self._ack = ack
        self._ahead = ahead
        self._preparing: deque[asyncio.Task[None]] = deque()
        self._writing: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """A batch is being decoded, prepared or written."""
        return any(not t.done() for t in self._tasks)

    @property
    def _tasks(self) -> list[asyncio.Task[None]]:
        return [*self._preparing, *([self._writing] if self._writing is not None else [])]

    async def submit(self, batch: Sequence[Any]) -> None:
        started = time.perf_counter()
        decoding = asyncio.create_task(
            self._sink.decode_until_done(source_records(batch)), name="sink-decode"
        )
        before = self._preparing[-1] if self._preparing else None
        self._preparing.append(
            asyncio.create_task(
                self._prepare(before, decoding, batch, started), name="sink-prepare"
            )
        )
        await self._prepared_down_to(self._ahead)

    async def drain(self) -> None:
        """Return when every batch submitted is written and acked."""
        await self._prepared_down_to(0)
        await self._written()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._preparing.clear()
        self._writing = None

    async def _prepared_down_to(self, waiting: int) -> None:
        """Wait, oldest first, until at most `waiting` batches are still being decoded or
        prepared."""
        while len(self._preparing) > waiting:
            await self._preparing[0]
            self._preparing.popleft()

    async def _written(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            await writing

    async def _prepare(
        self,
        before: asyncio.Task[None] | None,
        decoding: asyncio.Task[DecodedBatch],
        batch: Sequence[Any],
        started: float,
    ) -> None:
        try:
            if before is not None:
                await asyncio.shield(before)  # in order (its own cancel is close's)
            decoded = await decoding
        except asyncio.CancelledError:
            decoding.cancel()
            raise
        prepared = await self._sink.prepare_decoded_until_done(decoded, started)
        await self._written()
        self._writing = asyncio.create_task(self._write(prepared, batch), name="sink-write")

    async def _write(self, prepared: PreparedBatch, batch: Sequence[Any]) -> None:
        await self._sink.finish_until_done(prepared)
        await self._ack(batch)
