from __future__ import annotations

from collections.abc import Iterator

import pytest

from sentinel_usage.cli.tansu import TansuBroker
from tests.e2e.stack import Stack, start_stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="module")
def own_broker() -> Iterator[str]:
    """A broker of the module's own, so that no other stack shares the consumer group."""
    with TansuBroker() as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`sentinel-usage up` on its embedded broker, as `make run` starts it."""
    running = start_stack(tmp_path_factory.mktemp("stack") / "var")
    yield running
    running.stop()
