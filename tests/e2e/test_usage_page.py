"""The Usage tab in headless Chromium (Playwright, Debian's chromium) over a seeded
stack: the same numbers as the API, filters, pagination, export, refresh."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.stack import Stack
from tests.factories import raw_event

PROJECT = "proj-ui"


@pytest.fixture(scope="module")
def stack(ui_stack: Stack) -> Stack:
    return ui_stack


@pytest.fixture(scope="module")
def seeded(stack: Stack) -> dict[str, Any]:
    pass_id = f"SP-ui-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    events = []
    for i in range(60):
        kind = "token_generation" if i % 10 == 0 else "api_request"
        events.append(
            raw_event(
                project_id=PROJECT,
                pass_id=pass_id,
                activity_type=kind,
                started_at=(now - timedelta(minutes=7 * i)).isoformat(),
                endpoint=["/v1/orders", "/v1/items/42", "/v1/search"][i % 3],
                status_code=500 if i % 6 == 1 else 200,
                duration_ms=100.0 + 15 * i,
                user_agent=f"agent/{i}",
                error_message="upstream failed" if i % 6 == 1 else None,
            )
        )
    with stack.client([PROJECT]) as http:
        assert http.post("/v1/events", json=events).json()["accepted"] == 60
        deadline = time.monotonic() + 10
        while True:
            page = http.get(f"/v1/projects/{PROJECT}/passes/{pass_id}/activity")
            if page.status_code == 200 and page.json()["total"] == 60:
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
    return {"pass_id": pass_id, "events": events}


def open_page(browser: Browser, stack: Stack, pass_id: str, **context: Any) -> Page:
    page = browser.new_page(accept_downloads=True, **context)
    token = stack.token([PROJECT], ["usage:read", "usage:export"])
    page.add_init_script(f"sessionStorage.setItem('sentinel.token', {token!r})")
    page.goto(f"{stack.base_url}/ui/projects/{PROJECT}/passes/{pass_id}/usage")
    expect(page.locator("#main")).to_be_visible()
    expect(page.locator("#updated")).not_to_have_text("—")
    return page


def test_the_page_shows_the_api_numbers(
    browser: Browser, stack: Stack, seeded: dict[str, Any], artifacts_dir: Path
) -> None:
    pass_id = seeded["pass_id"]
    page = open_page(
        browser, stack, pass_id, viewport={"width": 1280, "height": 800}, timezone_id="UTC"
    )
    with stack.client([PROJECT], ["usage:read"]) as http:
        usage = http.get(
            f"/v1/projects/{PROJECT}/passes/{pass_id}/usage",
            params={"tz": "UTC", "percentiles": "50,95,99"},
        ).json()
    m = usage["metrics"]
    expect(page.locator("#m-total")).to_have_text(f"{m['total_requests']:,}")
    expect(page.locator("#m-success")).to_have_text(f"{m['success_rate'] * 100:.1f}%")
    expect(page.locator("#m-avg")).to_have_text(f"{m['avg_latency_ms']:.1f} ms")
    expect(page.locator("#m-avg")).to_have_class(f"value level-{m['avg_latency_level']}")
    expect(page.locator("#m-p95")).to_have_text(f"{m['p95_latency_ms']:.1f} ms")
    expect(page.locator("#m-p50")).to_have_text(f"{m['p50_latency_ms']:.1f} ms")
    expect(page.locator("#m-p99")).to_have_text(f"{m['p99_latency_ms']:.1f} ms")

    # the top endpoints under the chart: the API's breakdown, most requested first
    with stack.client([PROJECT], ["usage:read"]) as http:
        found = http.get(
            f"/v1/projects/{PROJECT}/passes/{pass_id}/endpoints",
            params={"tz": "UTC", "per_page": 10},
        ).json()
    rows = page.locator("#endpoints tbody tr")
    expect(rows).to_have_count(len(found["items"]))
    for index, item in enumerate(found["items"]):
        expect(rows.nth(index).locator("td")).to_have_text(
            [
                item["endpoint"],
                f"{item['total_requests']:,}",
                f"{item['error_count']:,}",
                f"{item['error_rate'] * 100:.1f}%",
                f"{item['avg_latency_ms']:.1f} ms",
                f"{item['p95_latency_ms']:.1f} ms",
            ]
        )
    assert sum(item["total_requests"] for item in found["items"]) == m["total_requests"]
    expect(page.locator("#status-classes")).to_contain_text("2xx")
    expect(page.locator("#m-endpoints")).to_have_text(str(m["unique_endpoints"]))
    expect(page.locator("#m-errors")).to_have_text(f"{m['error_rate'] * 100:.1f}%")
    expect(page.locator("#m-error-warning")).to_be_visible()  # 9 of 54 failed: above 5%
    expect(page.locator("#retention-note")).to_be_hidden()  # 24 h of a 90-day retention

    # the chart: one point per hourly bucket; hovering shows the bucket's numbers
    expect(page.locator("#chart rect.hit")).to_have_count(24)
    busiest = max(range(24), key=lambda i: usage["timeline"][i]["total_requests"])
    page.locator(f"#chart rect.hit[data-index='{busiest}']").hover()
    bucket = usage["timeline"][busiest]
    tooltip = page.locator("#tooltip")
    expect(tooltip.locator("[data-field=total_requests]")).to_have_text(
        str(bucket["total_requests"])
    )
    expect(tooltip.locator("[data-field=success_count]")).to_have_text(str(bucket["success_count"]))
    expect(tooltip.locator("[data-field=error_count]")).to_have_text(str(bucket["error_count"]))
    page.screenshot(path=str(artifacts_dir / "usage-1280x800.png"), full_page=True)

    page.select_option("#range", "7d")
    expect(page.locator("#chart rect.hit")).to_have_count(7)
    page.close()


def test_filters_and_pagination_follow_the_api(
    browser: Browser, stack: Stack, seeded: dict[str, Any]
) -> None:
    pass_id = seeded["pass_id"]
    page = open_page(browser, stack, pass_id)
    rows = page.locator("#log tbody tr:not(.details)")
    expect(rows).to_have_count(25)
    expect(page.locator("#page-info")).to_have_text("Page 1 of 3 · 60 records")
    page.click("#next")
    expect(page.locator("#page-info")).to_have_text("Page 2 of 3 · 60 records")
    page.click("#next")
    expect(rows).to_have_count(10)
    page.select_option("#per-page", "100")
    expect(rows).to_have_count(60)

    with stack.client([PROJECT], ["usage:read"]) as http:

        def api_ids(**params: str) -> list[str]:
            body = http.get(f"/v1/projects/{PROJECT}/passes/{pass_id}/activity",
                            params={**params, "per_page": "100"}).json()  # fmt: skip
            return [r["event_id"] for r in body["items"]]

        page.select_option("select[name=status]", "failed")
        page.click("#filters button[type=submit]")
        expect(rows).to_have_count(len(api_ids(status="failed")))
        assert rows.evaluate_all("rs => rs.map(r => r.dataset.eventId)") == api_ids(status="failed")
        expect(page.locator("#log tbody td.fail")).to_have_count(len(api_ids(status="failed")))

        page.fill("input[name=endpoint]", "ORDERS")
        page.select_option("select[name=activity_type]", "api_request")
        page.click("#filters button[type=submit]")
        want = api_ids(status="failed", endpoint="ORDERS", activity_type="api_request")
        expect(rows).to_have_count(len(want))
        assert rows.evaluate_all("rs => rs.map(r => r.dataset.eventId)") == want

        page.click("#clear")
        expect(rows).to_have_count(60)

        # a row expands to its details
        first = rows.first
        first.locator("button.expand").click()
        details = page.locator("#log tbody tr.details").first
        expect(details).to_be_visible()
        expect(details).to_contain_text("User agent")
        expect(first.locator("button.expand")).to_have_attribute("aria-expanded", "true")
    page.close()


def test_export_downloads_the_api_file(
    browser: Browser, stack: Stack, seeded: dict[str, Any], tmp_path: Path
) -> None:
    pass_id = seeded["pass_id"]
    page = open_page(browser, stack, pass_id)
    page.select_option("#export-format", "csv")
    with page.expect_download() as info:
        page.click("#export")
    download = info.value
    assert download.suggested_filename.startswith(f"sentinel-pass-activity-{pass_id}-")
    assert download.suggested_filename.endswith(".csv")
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    lines = target.read_text().strip().splitlines()
    assert lines[0].startswith("event_id,activity_type,started_at")
    assert len(lines) == 61
    expect(page.locator("#export-status")).to_contain_text("Exported 60 records")
    expect(page.locator("#export-next")).to_be_hidden()
    page.close()


def test_auto_refresh_pauses_when_hidden_and_after_three_failures(
    browser: Browser, stack: Stack, seeded: dict[str, Any]
) -> None:
    page = browser.new_page()
    page.clock.install()
    token = stack.token([PROJECT], ["usage:read"])
    page.add_init_script(f"sessionStorage.setItem('sentinel.token', {token!r})")
    usage_calls: list[str] = []
    page.on("request", lambda r: usage_calls.append(r.url) if "/usage?" in r.url else None)
    page.goto(f"{stack.base_url}/ui/projects/{PROJECT}/passes/{seeded['pass_id']}/usage")
    expect(page.locator("#updated")).not_to_have_text("—")
    assert len(usage_calls) == 1

    page.clock.run_for(31_000)
    expect(page.locator("#updated")).not_to_have_text("—")
    page.wait_for_timeout(300)
    assert len(usage_calls) == 2  # refreshed after 30 s

    # a hidden tab does not refresh
    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    page.clock.run_for(61_000)
    page.wait_for_timeout(300)
    assert len(usage_calls) == 2
    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")

    # three failed refreshes pause polling, with a message; a manual refresh resumes
    page.route("**/v1/**", lambda route: route.fulfill(status=503, body='{"detail": "down"}'))
    for _ in range(3):
        page.clock.run_for(30_000)
        page.wait_for_timeout(200)
    status = page.locator("#refresh-status")
    expect(status).to_contain_text("Auto-refresh paused after 3 failed refreshes")
    failed = len(usage_calls)
    page.clock.run_for(90_000)
    page.wait_for_timeout(300)
    assert len(usage_calls) == failed  # paused
    page.unroute("**/v1/**")
    page.click("#refresh")
    expect(status).to_be_hidden()
    page.clock.run_for(30_000)
    page.wait_for_timeout(300)
    assert len(usage_calls) == failed + 2  # the manual one, and polling again
    page.close()


def test_narrow_screen_and_keyboard(
    browser: Browser, stack: Stack, seeded: dict[str, Any], artifacts_dir: Path
) -> None:
    page = open_page(browser, stack, seeded["pass_id"], viewport={"width": 390, "height": 844})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways at 390 px ({width} px)"
    page.screenshot(path=str(artifacts_dir / "usage-390x844.png"), full_page=True)
    # every control has a label, and the range selector works from the keyboard
    unlabeled = page.evaluate("""() => [...document.querySelectorAll('select, input, button')]
        .filter(el => !el.labels?.length && !el.getAttribute('aria-label')
                      && !el.textContent.trim())
        .map(el => el.outerHTML)""")
    assert unlabeled == []
    page.focus("#range")
    page.keyboard.press("ArrowDown")
    expect(page.locator("#chart rect.hit")).to_have_count(7)
    page.close()


def test_index_lists_the_project_passes(
    browser: Browser, stack: Stack, seeded: dict[str, Any], artifacts_dir: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{stack.base_url}/ui/projects/{PROJECT}")
    page.click("#local-sign-in")  # local mode: the page signs itself in
    # a pass known only from its events: listed apart, and it opens on its Usage tab
    card = page.locator("#unmanaged > li", has_text=seeded["pass_id"])
    expect(card).to_be_visible()
    expect(card.locator("[data-field=total_requests_24h]")).to_have_text("54")
    card.locator("a").click()
    expect(page.locator("#pass-title")).to_have_text(seeded["pass_id"])
    expect(page.locator("#tab-usage")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#tab-overview")).to_be_hidden()
    assert page.url.endswith("/usage")
    assert "token" not in page.url
    page.close()
