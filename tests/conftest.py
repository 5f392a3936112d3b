"""Fixtures for the real components.

The broker is the embedded Tansu on a free loopback port unless
KAFKA_BOOTSTRAP_SERVERS names an external one; ClickHouse is chDB in a
temporary directory unless CLICKHOUSE_URL names a server. chDB allows one data
directory per process, so the whole test session shares one, and each test
module gets a database of its own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import authlib.deprecate  # noqa: F401  (see below)
import pytest

from sentinel_usage.analytics.clickhouse import connect
from sentinel_usage.analytics.migrate import migrate
from sentinel_usage.analytics.migrations.context import MigrationContext
from sentinel_usage.cli.tansu import TansuBroker

# Authlib puts an "always" filter for its deprecation warnings in front of every filter when
# authlib.deprecate is first imported; imported inside a test, that came after pyproject's
# `filterwarnings` and its notice about httpx2 showed in every run. Imported here, before
# any test, the pyproject filters go in front of it.


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with TansuBroker() as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def clickhouse_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    return os.environ.get("CLICKHOUSE_URL") or f"chdb://{tmp_path_factory.mktemp('chdb')}"


@pytest.fixture(scope="module")
def clickhouse_db(clickhouse_dsn: str) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = connect(clickhouse_dsn)
    admin.command(f"CREATE DATABASE {name}")
    yield name
    admin.command(f"DROP DATABASE IF EXISTS {name} SYNC")


@pytest.fixture(scope="module")
def clickhouse(clickhouse_dsn: str, clickhouse_db: str) -> Any:
    """A client on a migrated database of this module's own."""
    client = connect(clickhouse_dsn, database=clickhouse_db)
    migrate(client, MigrationContext())
    return client


@pytest.fixture
def artifacts_dir() -> Path:
    path = Path(__file__).parent / "artifacts"
    path.mkdir(exist_ok=True)
    return path
