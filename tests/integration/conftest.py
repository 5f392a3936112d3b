from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sentinel_usage.analytics.activity import ActivityLogQuery
from sentinel_usage.analytics.alerts import AlertStore
from sentinel_usage.analytics.exports import ExportAudit
from sentinel_usage.analytics.usage import UsageQuery
from sentinel_usage.api.app import create_app
from sentinel_usage.api.auth import TokenVerifier, issue_token
from sentinel_usage.api.services import ApiServices
from sentinel_usage.core import topics
from sentinel_usage.core.events import EventValidator
from sentinel_usage.core.settings import Settings
from sentinel_usage.ingest.producer import EventPublisher, GatewayProducer, KeyedRecordPublisher
from sentinel_usage.passes.registry import PassRegistry


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


SECRET = "integration-secret-" + "x" * 32


@pytest.fixture(scope="module")
def api_client(
    clickhouse: Any, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """The real FastAPI app in-process, on this module's ClickHouse database, the
    session's broker and a registry (SQLite) of its own."""
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        jwt_secret=SECRET,  # type: ignore[arg-type]
        export_snapshot_lag_seconds=0,
        data_dir=tmp_path_factory.mktemp("api"),
    )
    services = ApiServices(
        settings=settings,
        verifier=TokenVerifier.from_secret(SECRET),
        validator=EventValidator(),
        publisher=EventPublisher(kafka_bootstrap),
        activity=ActivityLogQuery(clickhouse),
        usage=UsageQuery(clickhouse),
        exports=ExportAudit(clickhouse),
        alerts=AlertStore(clickhouse),
        clickhouse=clickhouse,
        registry=PassRegistry.from_settings(settings),
        token_events=GatewayProducer(kafka_bootstrap),
        lifecycle_publisher=KeyedRecordPublisher(kafka_bootstrap, topics.PASSES),
    )
    with TestClient(create_app(services)) as client:
        yield client


def bearer(projects: list[str], scopes: list[str], subject: str = "auditor-1") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, projects, scopes, subject=subject)}"}
