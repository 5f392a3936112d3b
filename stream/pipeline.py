"""SinkPipeline: three batches at once, each at its own step, acks in order."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sentinel_usage.stream.batcher import source_records
from sentinel_usage.stream.decode import DecodedBatch
from sentinel_usage.stream.sink import PreparedBatch, UsageSink

Ack = Callable[[Sequence[Any]], Awaitable[None]]


class SinkPipeline:
    """Batch N+2 is decoded (`UsageSink.decode`, in a thread: Arrow's JSON reader and
    compute kernels, mostly without the GIL) while batch N+1 is deduplicated and applied
    to its windows (`UsageSink.prepare_decoded`, on the event loop) and batch N's rows
    and rollups are written (`UsageSink.finish`, in ClickHouse's threads). Decoding
    touches no state, so it may run ahead; preparation and writing each take one batch
    at a time, in order: N is acked once written, before N+1's writing begins, and N+1
    is prepared after N was. The sink keeps the in-flight batch's events and windows
    apart (UsageSink.prepare), so the steps overlap exactly as if one came after the
    other.

    `submit` returns once the batch's decoding started and the batch before it is
    prepared (so at most one batch waits at each step); `drain` waits for all of them
    to be written and acked; `close` cancels what is in progress (those batches are not
    acked: their records come again and are deduplicated)."""

    def __init__(self, sink: UsageSink, ack: Ack) -> None:
        self._sink = sink
        self._ack = ack
        self._preparing: asyncio.Task[None] | None = None
        self._writing: asyncio.Task[None] | None = None
        self._submitting = False

    @property
    def busy(self) -> bool:
        """A batch is being decoded, prepared or written."""
        return self._submitting or any(t is not None and not t.done() for t in self._tasks)

    @property
    def _tasks(self) -> tuple[asyncio.Task[None] | None, ...]:
        return (self._preparing, self._writing)

    async def submit(self, batch: Sequence[Any]) -> None:
        started = time.perf_counter()
        decoding = asyncio.create_task(
            self._sink.decode_until_done(source_records(batch)), name="sink-decode"
        )
        self._submitting = True
        try:
            await self._prepared()
        except BaseException:
            decoding.cancel()
            raise
        finally:
            self._submitting = False
        self._preparing = asyncio.create_task(
            self._prepare(decoding, batch, started), name="sink-prepare"
        )

    async def drain(self) -> None:
        """Return when every batch submitted is written and acked."""
        await self._prepared()
        await self._written()

    async def close(self) -> None:
        for task in self._tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._preparing = self._writing = None

    async def _prepared(self) -> None:
        if self._preparing is not None:
            preparing, self._preparing = self._preparing, None
            await preparing

    async def _written(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            await writing

    async def _prepare(
        self, decoding: asyncio.Task[DecodedBatch], batch: Sequence[Any], started: float
    ) -> None:
        try:
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
