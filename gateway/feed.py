"""What the gateway knows of each pass, from the compacted topic `sentinel.passes`: read
from its beginning at start, then followed. A token is refused once its pass is deleted
or revoked, or its credentials were regenerated since it was issued; a paused pass's
unexpired tokens keep working (the seeds). Where the topic cannot be read, introspection
at the token service answers instead."""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from sentinel_usage.core import topics
from sentinel_usage.gateway.tokens import PassToken

log = structlog.get_logger(__name__)

FEED_ERRORS = Counter("sentinel_gateway_feed_errors", "Failures reading sentinel.passes.")
INTROSPECTIONS = Counter(
    "sentinel_gateway_introspections", "Tokens checked by introspection (the feed was down)."
)


class Unknown(enum.Enum):
    """What the feed cannot say without an await (introspection)."""

    UNKNOWN = enum.auto()


UNKNOWN: Final = Unknown.UNKNOWN
STALE_AFTER: Final = 5.0  # seconds without a successful poll: the feed is not trusted

Introspect = Callable[[str], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class PassState:
    credential_version: int
    revoked: bool
    status: str


class PassFeed:
    def __init__(self, bootstrap_servers: str, introspect: Introspect | None = None) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._introspect = introspect
        self._states: dict[str, PassState | None] = {}  # None: deleted (a tombstone)
        self._caught_up = False
        self._last_poll = float("-inf")
        self._answers: dict[str, tuple[float, str | None]] = {}

    @property
    def healthy(self) -> bool:
        return self._caught_up and time.monotonic() - self._last_poll < STALE_AFTER

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        pass_id = key.decode()
        if value is None:
            self._states[pass_id] = None
            return
        state = orjson.loads(value)
        self._states[pass_id] = PassState(
            int(state["credential_version"]), bool(state["revoked"]), str(state["status"])
        )

    def known_refusal(self, claims: PassToken) -> str | Literal[Unknown.UNKNOWN] | None:
        """`refusal` without an await, from what the feed holds: UNKNOWN when only the
        introspection can say (the topic cannot be read)."""
        if self._introspect is not None and not self.healthy:
            return UNKNOWN
        return self._state_refusal(claims)

    async def refusal(self, token: str, claims: PassToken) -> str | None:
        """Why this verified token must be refused now; None when it is admitted."""
        if self._introspect is not None and not self.healthy:
            return await self._introspected(token)
        return self._state_refusal(claims)

    def _state_refusal(self, claims: PassToken) -> str | None:
        if claims.pass_id not in self._states:
            return None  # created after the last record read; its token verified
        state = self._states[claims.pass_id]
        if state is None:
            return "the pass was deleted"
        if state.revoked:
            return "the pass was revoked"
        if claims.credential_version < state.credential_version:
            return "the pass's credentials were regenerated"
        return None

    async def _introspected(self, token: str) -> str | None:
        now = time.monotonic()
        cached = self._answers.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        assert self._introspect is not None
        INTROSPECTIONS.inc()
        answer = await self._introspect(token)
        refusal = None if answer.get("active") else "the token is no longer active"
        if len(self._answers) > 50_000:
            self._answers.clear()
        self._answers[token] = (now + 1.0, refusal)
        return refusal

    async def run(self) -> None:
        """Until cancelled: read the topic from its beginning, then follow it. A broker
        that is away is retried; meanwhile `healthy` is false and introspection answers."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as exc:
                FEED_ERRORS.inc()
                self._caught_up = False
                log.warning("gateway_feed_unavailable", error=repr(exc))
                await asyncio.sleep(1.0)

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            partitions = await _partitions(consumer)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        self.apply(record.key, record.value)
                self._last_poll = time.monotonic()
                if not self._caught_up:
                    positions = {tp: await consumer.position(tp) for tp in ends}
                    if all(positions[tp] >= end for tp, end in ends.items()):
                        self._caught_up = True
                        log.info("gateway_feed_caught_up", passes=len(self._states))
        finally:
            await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer) -> list[TopicPartition]:
    for _ in range(50):
        found = consumer.partitions_for_topic(topics.PASSES)
        if found:
            return [TopicPartition(topics.PASSES, p) for p in sorted(found)]
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise KafkaError(f"topic {topics.PASSES} not found")
