"""Typed settings (SENTINEL_* environment variables), validated at start-up."""

from __future__ import annotations

import ipaddress
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sentinel_usage.core.alerts import ErrorRateRule
from sentinel_usage.core.errors import ConfigurationError
from sentinel_usage.core.windows import RollupTier, rollup_tiers, validate_window_size

MIN_HS256_SECRET_BYTES = 32
LOCAL_SECRET_FILE = "jwt_secret"  # noqa: S105 - a file name, not a secret


class Settings(BaseSettings):
    """Every knob of the pipeline; `local` may fill in insecure defaults, `production` never."""

    model_config = SettingsConfigDict(env_prefix="SENTINEL_", extra="ignore", frozen=True)

    mode: Literal["local", "production"] = "local"
    data_dir: Path = Path("var")
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=0, le=65535)

    kafka_bootstrap_servers: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "SENTINEL_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"
        ),
        description="host:port[,host:port]; unset = the embedded Tansu broker (`up` only).",
    )
    clickhouse_url: str | None = Field(
        None,
        validation_alias=AliasChoices("SENTINEL_CLICKHOUSE_URL", "CLICKHOUSE_URL"),
        description="http(s)://user:pass@host:8123/db or chdb:///path; unset = chDB in data_dir.",
    )
    # Set by `up` when it starts the embedded broker, which keeps nothing across a
    # restart: the ingest journals what it acknowledges (ingest/journal.py), and
    # offsets are qualified by the broker's life (`broker_epoch`, stream/windows.py).
    ingest_journal: bool = False
    broker_epoch: str = ""
    journal_trim_seconds: float = Field(
        2.0, gt=0, description="how often consumed journal segments are deleted"
    )
    events_topic_partitions: int = Field(4, ge=1, le=1024)
    kafka_replication_factor: int = Field(1, ge=1, le=16)

    jwt_secret: SecretStr | None = None
    jwt_public_key_file: Path | None = None
    jwt_audience: str | None = None

    retention_days: int = Field(90, ge=1, le=3650)
    max_request_events: int = Field(10_000, ge=1)
    max_request_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    max_future_skew_seconds: int = Field(300, ge=0)
    max_metadata_depth: int = Field(32, ge=1, le=128, description="nesting levels of `metadata`")

    # The sink takes `sink_batch_messages` Kafka messages (or what came within
    # `sink_batch_seconds`); while takes come back full, it joins them up to
    # `sink_batch_bytes` of messages or `sink_batch_max_messages` per batch.
    sink_batch_messages: int = Field(20, ge=1)
    sink_batch_seconds: float = Field(0.2, gt=0)
    sink_batch_bytes: int = Field(4 * 1024 * 1024, ge=1)
    sink_batch_max_messages: int = Field(2_000, ge=1)
    # Messages Faust may read ahead of the sink. Faust's default (4,096) holds up
    # to 4 million events in memory when messages are envelopes. Faust stops fetching a
    # partition when its buffer is 80% full and resumes it at 40%; but once every
    # partition is stopped its fetcher sleeps a whole second (faust-streaming's
    # Consumer._wait_next_records), so the buffer must hold more than a second of the
    # sink's work at 40%: at 128 it ran dry for 0.3-0.7 s every second or so (2 million
    # events of the stream bench: 99k events/s, peak RSS 907 MB); at 256, 108k-117k with
    # no gaps, RSS 914-924 MB; 512 went to 1,051 MB in one run.
    stream_buffer_messages: int = Field(256, ge=1)
    # How often the worker gives glibc's free heap pages back (stream/worker.py); 0: never.
    memory_trim_seconds: float = Field(0.25, ge=0, description="0 never returns them")
    commit_interval_seconds: float = Field(1.0, gt=0)
    broker_session_timeout_seconds: float = Field(6.0, gt=0)
    broker_heartbeat_interval_seconds: float = Field(1.0, gt=0)

    window_seconds: int = Field(60, description="tumbling window size; must divide 900")
    window_resident_minutes: int = Field(15, ge=1, description="windows kept in worker memory")
    # The rollup tiers' retentions (core/windows.py): the window's own tier answers the
    # last day's figures of the pass list, so it keeps at least two days.
    window_retention_days: int = Field(3, ge=2, le=3650, description="rollups of one window")
    quarter_hour_retention_days: int = Field(90, ge=1, le=3650, description="15-minute rollups")
    day_retention_days: int = Field(400, ge=1, le=3650, description="daily (UTC) rollups")
    window_evict_every_seconds: float = Field(5.0, gt=0)
    # How far back the worker knows which windows the rollups hold (stream/rollup_keys.py).
    window_known_minutes: int = Field(120, ge=1, description="windows indexed, not looked up")

    alert_error_rate_threshold: float = Field(0.05, gt=0, lt=1)
    alert_min_requests: int = Field(20, ge=1)
    alert_window_seconds: int = Field(300, ge=1, description="trailing window of the rule")
    alert_every_seconds: float = Field(60.0, gt=0, description="evaluation interval")
    lag_every_seconds: float = Field(5.0, gt=0, description="consumer-lag metric interval")
    alertmanager_url: str | None = Field(None, description="e.g. http://alertmanager:9093")
    # /metrics carries per-pass figures of every tenant: it is served on a listener of
    # its own, loopback by default, never on the API's port.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9464, ge=0, le=65535, description="0: any free port")
    metrics_pass_series_max: int = Field(
        1000, ge=0, description="per-pass series exposed at once; beyond, counted, not shown"
    )
    metrics_pass_idle_minutes: int = Field(
        60, ge=1, description="a pass idle this long leaves the exposition"
    )

    dlq_budget_share: float = Field(
        0.1, gt=0, le=1, description="dead-lettered share of recent records that alerts"
    )
    dlq_budget_records: int = Field(1000, ge=1, description="how many recent records")

    export_snapshot_lag_seconds: float = Field(
        5.0, ge=0, description="an export leaves out rows ingested this recently"
    )

    # The pass registry and its OAuth token endpoint.
    database_url: str | None = Field(
        None, description="postgresql+asyncpg://...; unset = SQLite in data_dir (local mode)"
    )
    oauth_keys_dir: Path | None = Field(
        None,
        description="ES256 PEM keys: the newest signs, all verify; unset = data_dir/oauth-keys",
    )
    oauth_issuer: str | None = Field(None, description="`iss` of access tokens; unset = API URL")
    oauth_audience: str = Field("sentinel-gateway", min_length=1)
    access_token_seconds: int = Field(3600, ge=60, le=86_400)
    oauth_max_failures: int = Field(10, ge=1, description="failed exchanges per client...")
    oauth_failure_window_seconds: int = Field(60, ge=1, description="...within this window")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False

    @field_validator("window_seconds")
    @classmethod
    def _window_tiles_every_zone(cls, value: int) -> int:
        return validate_window_size(value)

    @model_validator(mode="after")
    def _alert_window_is_whole_windows(self) -> Self:
        if self.alert_window_seconds % self.window_seconds:
            raise ValueError(
                "SENTINEL_ALERT_WINDOW_SECONDS must be a multiple of SENTINEL_WINDOW_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _local_mode_listens_on_loopback_only(self) -> Self:
        # Local mode signs tokens for the page that asks (/ui/local-token): reachable
        # from another machine, it would give them to anyone.
        for name, host in (("SENTINEL_API_HOST", self.api_host),
                           ("SENTINEL_METRICS_HOST", self.metrics_host)):  # fmt: skip
            if self.mode == "local" and not is_loopback(host):
                raise ValueError(
                    f"{name}={host!r}: local mode listens on a loopback address only "
                    "(127.0.0.1, ::1, localhost); set SENTINEL_MODE=production to serve "
                    "other machines"
                )
        return self

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> Self:
        if self.mode != "production":
            return self
        missing = []
        if self.jwt_secret is None and self.jwt_public_key_file is None:
            missing.append("SENTINEL_JWT_SECRET or SENTINEL_JWT_PUBLIC_KEY_FILE")
        if self.kafka_bootstrap_servers is None:
            missing.append("KAFKA_BOOTSTRAP_SERVERS")
        if self.clickhouse_url is None:
            missing.append("CLICKHOUSE_URL")
        if self.database_url is None:
            missing.append("SENTINEL_DATABASE_URL")
        if self.oauth_keys_dir is None:
            missing.append("SENTINEL_OAUTH_KEYS_DIR")
        if missing:
            raise ValueError(f"production mode requires {', '.join(missing)}")
        if self.jwt_secret is not None and (
            len(self.jwt_secret.get_secret_value().encode()) < MIN_HS256_SECRET_BYTES
        ):
            raise ValueError(f"SENTINEL_JWT_SECRET must be at least {MIN_HS256_SECRET_BYTES} bytes")
        return self

    @property
    def clickhouse_dsn(self) -> str:
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def registry_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'passes.db').resolve()}"

    @property
    def signing_keys_dir(self) -> Path:
        return self.oauth_keys_dir or self.data_dir / "oauth-keys"

    @property
    def rollup_tiers(self) -> tuple[RollupTier, ...]:
        return rollup_tiers(
            self.window_seconds,
            self.window_retention_days,
            self.quarter_hour_retention_days,
            self.day_retention_days,
        )

    @property
    def export_snapshot_lag(self) -> timedelta:
        return timedelta(seconds=self.export_snapshot_lag_seconds)

    @property
    def alert_rule(self) -> ErrorRateRule:
        return ErrorRateRule(
            threshold=self.alert_error_rate_threshold,
            min_requests=self.alert_min_requests,
            window=timedelta(seconds=self.alert_window_seconds),
            every=timedelta(seconds=self.alert_every_seconds),
        )

    @property
    def embedded_broker(self) -> bool:
        return self.kafka_bootstrap_servers is None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_settings(**overrides: object) -> Settings:
    """Read the environment; a bad value is a ConfigurationError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigurationError(f"invalid settings: {exc}") from exc


def with_local_jwt_secret(settings: Settings) -> Settings:
    """In local mode without a configured key, use (and on first start create) a random
    secret in the data directory, readable by its owner only."""
    if settings.jwt_secret is not None or settings.jwt_public_key_file is not None:
        return settings
    if settings.mode != "local":
        raise ConfigurationError("no JWT key configured")
    path = settings.data_dir / LOCAL_SECRET_FILE
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass  # created on an earlier start, or by a sibling process just now
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    return settings.model_copy(update={"jwt_secret": SecretStr(path.read_text().strip())})
