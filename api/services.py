"""What the routes need, built once per app from the settings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from sentinel_usage.analytics.clickhouse import ClickHouse, connect
from sentinel_usage.analytics.facade import Analytics
from sentinel_usage.api.auth import TokenVerifier
from sentinel_usage.core import topics
from sentinel_usage.core.clock import SYSTEM_CLOCK, Clock
from sentinel_usage.core.errors import ConfigurationError
from sentinel_usage.core.events import EventValidator, ValidationPolicy
from sentinel_usage.core.health import HEALTH, HealthBoard
from sentinel_usage.core.periodic import cancel_and_wait
from sentinel_usage.core.settings import Settings
from sentinel_usage.gateway.demo import create_demo_app
from sentinel_usage.gateway.feed import PassFeed
from sentinel_usage.gateway.middleware import SentinelGateway
from sentinel_usage.gateway.tokens import AccessTokenVerifier, JwksKeys
from sentinel_usage.ingest.batches import EventIngest
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
    publisher: Publisher
    ingest: EventIngest
    analytics: Analytics
    registry: PassRegistry
    token_events: GatewayProducer
    # Publishes the registry's lifecycle changes on sentinel.passes (None: not here).
    lifecycle_publisher: KeyedRecordPublisher | None = None
    # The demo API behind the gateway (`up` in local mode), and the feed it follows.
    demo_api: SentinelGateway | None = None
    gateway_feed: PassFeed | None = None
    clock: Clock = SYSTEM_CLOCK
    health: HealthBoard = HEALTH
    _relay: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _feed: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    async def start(self) -> None:
        await self.registry.start()  # the registry's migrations
        await self.publisher.start()
        await self.token_events.start()
        if self.lifecycle_publisher is not None:
            await self.lifecycle_publisher.start()
            relay = OutboxRelay(self.registry.store, self.lifecycle_publisher)
            if self.settings.broker_epoch:
                # A fresh embedded broker kept no topic: tell it every pass again, and
                # every deletion, before the gateway below reads sentinel.passes.
                await self.registry.store.republish_all()
                await relay.drain_all()
            self._relay = asyncio.create_task(relay.run(), name="passes-outbox-relay")
        if self.gateway_feed is not None:
            self._feed = asyncio.create_task(self.gateway_feed.run(), name="gateway-pass-feed")

    async def stop(self) -> None:
        await cancel_and_wait(self._feed)
        # What the relay did not publish stays in the outbox for the next start.
        await cancel_and_wait(self._relay)
        if self.lifecycle_publisher is not None:
            await self.lifecycle_publisher.stop()
        await self.token_events.close()
        await self.publisher.stop()
        await self.registry.stop()
        self.analytics.threads.close()

    async def readiness(self) -> dict[str, str]:
        """Each dependency's state: 'ok' or what is wrong."""
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(self.publisher.ping(), 3)
            checks["kafka"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", said as text
            checks["kafka"] = f"unreachable: {exc!r}"
        try:
            missing = await self.analytics.pending_migrations()
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


def build_services(
    settings: Settings,
    journal: IngestJournal | None = None,
    *,
    clickhouse: ClickHouse | None = None,
    publisher: Publisher | None = None,
) -> ApiServices:
    """What `settings` describe. `journal`: the embedded mode's, already replayed (see
    cli `up`); `clickhouse`, `publisher`: ones the caller opened (tests, benches)."""
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
    publisher = publisher or _publisher(settings, settings.kafka_bootstrap_servers, journal)
    clickhouse = clickhouse or connect(settings.clickhouse_dsn)
    registry = PassRegistry.from_settings(settings)
    token_events = GatewayProducer(settings.kafka_bootstrap_servers)
    feed = demo = None
    if settings.mode == "local":
        feed = PassFeed(settings.kafka_bootstrap_servers, _introspector(registry))
        demo = SentinelGateway(
            create_demo_app(),
            verifier=AccessTokenVerifier(
                JwksKeys(_jwks(registry)), settings.oauth_audience, registry.issuer.issuer
            ),
            feed=feed,
            events=token_events,
        )
    return ApiServices(
        settings=settings,
        verifier=verifier,
        publisher=publisher,
        ingest=EventIngest(EventValidator(policy), publisher, settings.max_request_events),
        analytics=Analytics(clickhouse, settings.rollup_tiers),
        registry=registry,
        token_events=token_events,
        lifecycle_publisher=KeyedRecordPublisher(settings.kafka_bootstrap_servers, topics.PASSES),
        demo_api=demo,
        gateway_feed=feed,
    )


def _jwks(registry: PassRegistry) -> Callable[[], Awaitable[dict[str, Any]]]:
    """The gateway in the token service's own process reads its keys directly."""

    async def jwks() -> dict[str, Any]:
        return registry.issuer.keys.jwks()

    return jwks


def _introspector(registry: PassRegistry) -> Callable[[str], Awaitable[dict[str, Any]]]:
    async def introspect(token: str) -> dict[str, Any]:
        try:
            project = str(jwt.decode(token, options={"verify_signature": False})["project_id"])
        except (jwt.PyJWTError, KeyError):
            return {"active": False}
        return await registry.introspect(token, frozenset({project}))

    return introspect


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
