from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from sentinel_usage.analytics.clickhouse import ClickHouse
from sentinel_usage.api.app import create_app
from sentinel_usage.api.auth import issue_token
from sentinel_usage.api.services import build_services
from sentinel_usage.core.settings import Settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


SECRET = "integration-secret-" + "x" * 32


@pytest.fixture(scope="module")
def api_client(
    clickhouse: ClickHouse, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """The real FastAPI app in-process, on this module's ClickHouse database, the
    session's broker and a registry (SQLite) of its own."""
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        jwt_secret=SECRET,  # type: ignore[arg-type]
        export_snapshot_lag_seconds=0,
        data_dir=tmp_path_factory.mktemp("api"),
    )
    services = build_services(settings, clickhouse=clickhouse)
    with TestClient(create_app(services)) as client:
        yield client


def bearer(projects: list[str], scopes: list[str], subject: str = "auditor-1") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, projects, scopes, subject=subject)}"}
