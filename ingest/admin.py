"""Creating the pipeline's Kafka topics (idempotent) and checking the broker."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from sentinel_usage.core import topics
from sentinel_usage.core.errors import DependencyUnavailableError

log = structlog.get_logger(__name__)


async def ensure_topics(
    bootstrap_servers: str,
    partitions: int,
    replication_factor: int = 1,
    connect_seconds: float = 30.0,
) -> list[str]:
    """Create the missing pipeline topics; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    try:
        await asyncio.wait_for(admin.start(), connect_seconds)
    except (KafkaError, TimeoutError, OSError) as exc:
        raise DependencyUnavailableError(
            f"Kafka unreachable at {bootstrap_servers}: {exc}"
        ) from exc
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=replication_factor,
                topic_configs={"cleanup.policy": "compact"} if name in topics.COMPACTED else {},
            )
            for name in topics.ALL
            if name not in existing
        ]
        if wanted:
            # A sibling process may have created them a moment ago.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
            log.info("topics_created", topics=[t.name for t in wanted])
        return [t.name for t in wanted]
    finally:
        await admin.close()
