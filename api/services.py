"""What the routes need, built once per app from the settings."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentinel_usage.analytics.activity import ActivityLogQuery
from sentinel_usage.analytics.alerts import AlertStore
from sentinel_usage.analytics.clickhouse import connect
from sentinel_usage.analytics.exports import ExportAudit
from sentinel_usage.analytics.migrate import pending
from sentinel_usage.analytics.usage import UsageQuery
from sentinel_usage.api.auth import TokenVerifier
from sentinel_usage.core import topics
from sentinel_usage.core.clock import SYSTEM_CLOCK, Clock
from sentinel_usage.core.errors import ConfigurationError
from sentinel_usage.core.events import EventValidator, ValidationPolicy
from sentinel_usage.core.health import HEALTH, HealthBoard
from sentinel_usage.core.settings import Settings
from sentinel_usage.ingest.durable import CommittedOffsets, DurablePublisher
from sentinel_usage.ingest.journal import IngestJournal
from sentinel_usage.ingest.producer import (
    EventPublisher,
    GatewayProducer,
    KeyedRecordPublisher,
    Publisher,
)
from sentinel_usage.passes.outbox import OutboxRelay
from sentinel_usage.passes.registry import PassRegistry


@dataclass
class ApiServices:
    settings: Settings
    verifier: TokenVerifier
    validator: EventValidator
    publisher: Publisher
    activity: ActivityLogQuery
    usage: UsageQuery
    exports: ExportAudit
    alerts: AlertStore
    clickhouse: Any
    registry: PassRegistry
    token_events: GatewayProducer
    # Publishes the registry's lifecycle changes on sentinel.passes (None: not here).
    lifecycle_publisher: KeyedRecordPublisher | None = None
    clock: Clock = SYSTEM_CLOCK
    health: HealthBoard = HEALTH
    _relay: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    async def start(self) -> None:
        await self.registry.start()  # the registry's migrations
        await self.publisher.start()
        await self.token_events.start()
        if self.lifecycle_publisher is not None:
            await self.lifecycle_publisher.start()
            relay = OutboxRelay(self.registry.store, self.lifecycle_publisher)
            self._relay = asyncio.create_task(relay.run(), name="passes-outbox-relay")

    async def stop(self) -> None:
        if self._relay is not None:
            # What it did not publish stays in the outbox for the next start.
            self._relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay
        if self.lifecycle_publisher is not None:
            await self.lifecycle_publisher.stop()
        await self.token_events.close()
        await self.publisher.stop()
        await self.registry.stop()

    async def readiness(self) -> dict[str, str]:
        """Each dependency's state: 'ok' or what is wrong."""
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(self.publisher.ping(), 3)
            checks["kafka"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", said as text
            checks["kafka"] = f"unreachable: {exc!r}"
        try:
            missing = await asyncio.to_thread(pending, self.clickhouse)
            checks["clickhouse"] = "ok"
            checks["migrations"] = (
                "ok" if not missing else "pending: " + ", ".join(f"{m.id:04d}" for m in missing)
            )
        except Exception as exc:  # noqa: BLE001
            checks["clickhouse"] = f"unreachable: {exc!r}"
            checks["migrations"] = "unknown"
        try:
            missing_revisions = await self.registry.pending_migrations()
            checks["registry"] = (
                "ok" if not missing_revisions else "pending: " + ", ".join(missing_revisions)
            )
        except Exception as exc:  # noqa: BLE001
            checks["registry"] = f"unreachable: {exc!r}"
        # What the worker in this process reports (`up`): a sink retrying, a worker down.
        checks.update(self.health.problems())
        return checks


def build_services(settings: Settings, journal: IngestJournal | None = None) -> ApiServices:
    """`journal`: the embedded mode's, already replayed (see cli `up`)."""
    if settings.kafka_bootstrap_servers is None:
        raise ConfigurationError("the API needs KAFKA_BOOTSTRAP_SERVERS (or run `up`)")
    if settings.jwt_public_key_file is not None:
        verifier = TokenVerifier.from_public_key_file(
            settings.jwt_public_key_file, settings.jwt_audience
        )
    elif settings.jwt_secret is not None:
        verifier = TokenVerifier.from_secret(
            settings.jwt_secret.get_secret_value(), settings.jwt_audience
        )
    else:
        raise ConfigurationError("no JWT key configured")

    policy = ValidationPolicy.from_settings(settings)
    clickhouse = connect(settings.clickhouse_dsn)
    return ApiServices(
        settings=settings,
        verifier=verifier,
        validator=EventValidator(policy),
        publisher=_publisher(settings, settings.kafka_bootstrap_servers, journal),
        activity=ActivityLogQuery(clickhouse),
        usage=UsageQuery(clickhouse),
        exports=ExportAudit(clickhouse),
        alerts=AlertStore(clickhouse),
        clickhouse=clickhouse,
        registry=PassRegistry.from_settings(settings),
        token_events=GatewayProducer(settings.kafka_bootstrap_servers),
        lifecycle_publisher=KeyedRecordPublisher(settings.kafka_bootstrap_servers, topics.PASSES),
    )


def _publisher(
    settings: Settings, bootstrap_servers: str, journal: IngestJournal | None
) -> Publisher:
    publisher = EventPublisher(bootstrap_servers)
    if not settings.ingest_journal:
        return publisher
    return DurablePublisher(
        publisher,
        journal or IngestJournal(journal_directory(settings)),
        CommittedOffsets(bootstrap_servers),
        trim_every=settings.journal_trim_seconds,
    )


def journal_directory(settings: Settings) -> Path:
    return settings.data_dir / "journal"
