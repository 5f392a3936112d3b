"""ActivitySink: one batch of Kafka records in, rows in ClickHouse and dead letters out.

Contract: `process()` returns only when every valid event of the batch is in
ClickHouse and every invalid one is acknowledged by the dead-letter topic; the
caller acks (and so lets Faust commit) the batch's offsets only after that.
While ClickHouse is unavailable it retries with back-off and blocks the
stream (back-pressure); it never dead-letters for that reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from sentinel_usage.analytics.writer import ActivityLogWriter
from sentinel_usage.core.errors import DependencyUnavailableError
from sentinel_usage.core.events import EventValidator, UsageEvent
from sentinel_usage.stream.decode import DeadLetter, SourceRecord, decode_records
from sentinel_usage.stream.metrics import (
    DEAD_LETTERS,
    EVENTS_WRITTEN,
    SINK_BATCH_SECONDS,
    SINK_RETRIES,
)

log = structlog.get_logger(__name__)

SendDeadLetter = Callable[[DeadLetter], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    first_delay: float = 0.1
    max_delay: float = 10.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay, self.first_delay * 2**attempt))


class ActivitySink:
    def __init__(
        self,
        writer: ActivityLogWriter,
        send_dead_letter: SendDeadLetter,
        validator: EventValidator,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self._writer = writer
        self._send_dead_letter = send_dead_letter
        self._validator = validator
        self._retry = retry

    async def process(self, records: Sequence[SourceRecord]) -> int:
        """Write the batch; return the number of events written."""
        started = time.perf_counter()
        decoded = decode_records(list(records), self._validator)
        await self._write(decoded.events)
        for dead in decoded.dead_letters:
            await self._send_dead_letter(dead)
            DEAD_LETTERS.labels(reason=dead.reason).inc()
            log.warning(
                "dead_lettered",
                reason=dead.reason,
                partition=dead.source.partition,
                offset=dead.source.offset,
                index=dead.index,
                errors=dead.errors,
            )
        EVENTS_WRITTEN.inc(len(decoded.events))
        SINK_BATCH_SECONDS.observe(time.perf_counter() - started)
        return len(decoded.events)

    async def _write(self, events: list[UsageEvent]) -> None:
        attempt = 0
        while True:
            try:
                await asyncio.to_thread(self._writer.write, events)
                return
            except DependencyUnavailableError as exc:
                delay = self._retry.delay(attempt)
                SINK_RETRIES.inc()
                log.warning("sink_insert_retry", attempt=attempt, delay=delay, error=str(exc))
                await asyncio.sleep(delay)
                attempt += 1
