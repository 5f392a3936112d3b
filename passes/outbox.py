"""Publishing the registry's lifecycle changes on `sentinel.passes` (compacted, key =
pass id, a tombstone on delete): the outbox rows a change committed are sent in order,
acknowledged by the broker, then deleted. At least once: a crash between the ack and
the delete sends a record again, which a compacted topic keyed by pass id absorbs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Protocol

import orjson
import structlog
from prometheus_client import Counter, Gauge

from sentinel_usage.core.periodic import periodic
from sentinel_usage.passes.store import OutboxRecord, PassStore

log = structlog.get_logger(__name__)

PUBLISHED = Counter("sentinel_passes_published", "Lifecycle records published on sentinel.passes.")
WAITING = Gauge("sentinel_passes_outbox", "Lifecycle records committed, not yet published.")


class KeyedPublish(Protocol):
    async def __call__(self, records: Sequence[tuple[str, bytes | None]]) -> None:
        """Send (key, value) records in order; return once the broker acknowledged all."""


def wire_value(record: OutboxRecord) -> bytes | None:
    return orjson.dumps(record.state) if record.state is not None else None


class OutboxRelay:
    def __init__(self, store: PassStore, publish: KeyedPublish, every: float = 1.0) -> None:
        self._store = store
        self._publish = publish
        self._every = every
        self._drain = periodic("passes_outbox", self._drain_once)

    async def drain(self) -> int:
        """Publish what is waiting now; the number of records sent."""
        return await self._store.relay_outbox(self._send)

    async def _send(self, records: Sequence[OutboxRecord]) -> None:
        await self._publish([(r.pass_id, wire_value(r)) for r in records])
        PUBLISHED.inc(len(records))

    async def drain_all(self) -> None:
        """Publish everything waiting now (at start, before a gateway reads the topic)."""
        while await self.drain():
            pass

    async def _drain_once(self) -> None:
        while await self.drain():
            pass
        WAITING.set(len(await self._store.outbox()))

    async def run(self) -> None:
        """Until cancelled: drain at every change the store signals, and every `every`
        seconds (a change committed by another process, a broker that was away)."""
        while True:
            self._store.changed.clear()
            await self._drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._store.changed.wait(), self._every)
