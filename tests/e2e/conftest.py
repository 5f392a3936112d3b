from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from sentinel_usage.cli.tansu import TansuBroker
from tests.e2e.stack import Stack, start_stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]  # fmt: skip


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


@pytest.fixture(scope="session")
def ui_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the browser tests of every page; it exports rows the moment they
    are written (no snapshot lag)."""
    running = start_stack(
        tmp_path_factory.mktemp("ui") / "var", SENTINEL_EXPORT_SNAPSHOT_LAG_SECONDS="0"
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (its own download is not
    reachable here). One per module: Playwright's sync API keeps an event loop running
    in this thread while it is open, and later modules call asyncio.run()."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()
