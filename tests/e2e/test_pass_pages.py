"""The pass pages in headless Chromium: the project's cards, the creation flow whose
secret is shown once, and the detail view's four tabs, each step checked against the
API's state (issue 15). Screenshots go to tests/artifacts/."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from tests.e2e.stack import Stack

PAGE_SCOPES = ["passes:read", "passes:write", "usage:read", "usage:export"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TABS = ("overview", "permissions", "usage", "settings")


@pytest.fixture
def project() -> str:
    """A project of the test's own, so that its list starts empty."""
    return f"proj-pages-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def admin(ui_stack: Stack, project: str) -> Iterator[httpx.Client]:
    """The API, to check what the pages did."""
    with ui_stack.client([project], PAGE_SCOPES) as client:
        yield client


def open_context(
    browser: Browser, stack: Stack, project: str, viewport: dict[str, int]
) -> BrowserContext:
    context = browser.new_context(
        viewport=viewport, permissions=["clipboard-read", "clipboard-write"], timezone_id="UTC"
    )
    token = stack.token([project], PAGE_SCOPES)
    context.add_init_script(f"sessionStorage.setItem('sentinel.token', {token!r})")
    return context


def exchange(stack: Stack, client_id: str, secret: str) -> int:
    """The status of a client-credentials exchange with these credentials."""
    answer = httpx.post(
        f"{stack.base_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )
    return answer.status_code


def create_through_the_form(page: Page, agent_name: str, **fields: str) -> dict[str, Any]:
    """Fills the creation form, reviews and creates; returns the JSON credentials shown."""
    page.click("#create")
    form = page.locator("#create-form")
    expect(form.locator("[name=agent_name]")).to_be_focused()  # focus moved into the dialog
    form.locator("[name=agent_name]").fill(agent_name)
    form.locator("[name=agent_type]").fill(fields.pop("agent_type", "Sourcing Agent"))
    for name, value in fields.items():
        locator = form.locator(f"[name={name}]")
        if locator.evaluate("el => el.tagName") == "SELECT":
            locator.select_option(value)
        else:
            locator.fill(value)
    form.locator("button[type=submit]").click()
    page.click("#create-submit")
    expect(page.locator("#create-credentials pre[data-format=json]")).to_be_visible()
    return dict(json.loads(page.locator("#create-credentials pre[data-format=json]").inner_text()))


def wait_for_activity(admin: httpx.Client, pass_path: str, count: int) -> None:
    """Until the pass's activity log holds `count` rows (its token exchanges)."""
    deadline = time.monotonic() + 15
    while admin.get(f"{pass_path}/activity").json()["total"] < count:
        assert time.monotonic() < deadline, "the exchange never reached the analytics"
        time.sleep(0.1)


def no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.viewport_size
    assert viewport is not None
    assert width <= viewport["width"], f"the page scrolls sideways ({width} px wide)"


def test_create_manage_and_delete_a_pass(
    browser: Browser, ui_stack: Stack, project: str, admin: httpx.Client, artifacts_dir: Path
) -> None:
    context = open_context(browser, ui_stack, project, DESKTOP)
    page = context.new_page()
    page.goto(f"{ui_stack.base_url}/ui/projects/{project}")
    expect(page.locator("#empty")).to_contain_text("no Sentinel Pass yet")

    # -- the API's validation messages, beside each field ------------------------------
    page.click("#create")
    form = page.locator("#create-form")
    form.locator("[name=agent_name]").fill("Invoice Bot!")
    form.locator("[name=agent_type]").fill("  Sourcing Agent ")
    expect(page.locator("#create-form-agent_type-hint")).to_have_text("Saved as sourcing_agent")
    form.locator("[name=scopes]").fill("read data!!")
    form.locator("[name=valid_until]").fill("2020-01-01")
    form.locator("button[type=submit]").click()
    expect(page.locator("#review")).to_contain_text("sourcing_agent")
    page.click("#create-submit")
    expect(form.locator("[data-error-for=agent_name]")).to_contain_text("should match pattern")
    expect(form.locator("[data-error-for=scopes]")).to_contain_text("scopes separated by commas")
    expect(form.locator("[name=agent_name]")).to_have_attribute("aria-invalid", "true")
    assert admin.get(f"/v1/projects/{project}/passes").json()["items"] == []

    form.locator("[name=agent_name]").fill("Invoice Bot")
    form.locator("[name=scopes]").fill("read:data,write:data")
    form.locator("[name=valid_until]").fill("2020-01-01")
    form.locator("button[type=submit]").click()
    page.click("#create-submit")  # valid_until before today's valid_from: the API says so
    expect(form.locator('[data-error-for=""]')).to_contain_text("valid_until must not be before")
    today = datetime.now(UTC).date()
    form.locator("[name=valid_until]").fill((today + timedelta(days=200)).isoformat())
    form.locator("[name=organization]").fill("Acme Corp")
    form.locator("[name=usage_type]").select_option("ai_assistant")
    form.locator("button[type=submit]").click()
    expect(page.locator("#review")).to_contain_text("AI Assistant")
    page.click("#create-submit")

    # -- the secret, shown once, in both formats, each copied ---------------------------
    shown = page.locator("#create-credentials pre[data-format=json]")
    expect(shown).to_be_visible()
    credentials = json.loads(shown.inner_text())
    secret, client_id, pass_id = (
        credentials["client_secret"],
        credentials["client_id"],
        credentials["pass_id"],
    )
    stored = admin.get(f"/v1/projects/{project}/passes/{pass_id}").json()
    assert stored["client_id"] == client_id
    assert stored["agent_type"] == "sourcing_agent"
    assert stored["scopes"] == ["read:data", "write:data"]
    assert stored["organization"] == "Acme Corp"
    assert exchange(ui_stack, client_id, secret) == 200
    bash = page.locator("#create-credentials pre[data-format=bash]").inner_text()
    assert f"export SENTINEL_CLIENT_SECRET={secret}" in bash
    for key, text in (("json", shown.inner_text()), ("bash", bash)):
        page.click(f"#create-credentials button[data-copy={key}]")
        expect(page.locator(f"#create-credentials button[data-copy={key}] + .copied")).to_have_text(
            "Copied"
        )
        assert page.evaluate("navigator.clipboard.readText()") == text
    page.screenshot(path=str(artifacts_dir / "pass-created-1280x800.png"))
    page.click("#create-done")
    expect(page.locator("#create-dialog")).not_to_be_visible()
    expect(page.locator("#create")).to_be_focused()  # focus back where it was
    expect(page.locator("#page-notice")).to_contain_text("cannot be shown again")
    assert secret not in page.content()
    page.reload()
    card = page.locator(f"#passes > li[data-pass-id='{pass_id}']")
    expect(card).to_be_visible()
    assert secret not in page.content()

    # -- the card, search and the status filter -----------------------------------------
    expect(card.locator("[data-field=state]")).to_have_text("Active")
    expect(card.locator(".chips li")).to_have_text(["read:data", "write:data"])
    expect(card.locator("[data-field=expiry]")).to_have_class("expiry-valid")
    expect(card.locator("[data-field=total_requests_24h]")).to_have_text("0")
    page.fill("#find [name=search]", "invoice")
    page.click("#find button[type=submit]")
    expect(page.locator("#passes > li")).to_have_count(1)
    page.select_option("#find [name=state]", "revoked")
    page.click("#find button[type=submit]")
    expect(page.locator("#passes > li")).to_have_count(0)
    expect(page.locator("#empty")).to_contain_text("No pass matches")
    page.fill("#find [name=search]", pass_id)
    page.select_option("#find [name=state]", "active")
    page.click("#find button[type=submit]")
    expect(page.locator("#passes > li")).to_have_count(1)
    page.screenshot(path=str(artifacts_dir / "passes-1280x800.png"))

    # -- Overview -----------------------------------------------------------------------
    wait_for_activity(admin, f"/v1/projects/{project}/passes/{pass_id}", 1)  # the exchange
    card.locator("a.card-title").click()
    expect(page).to_have_url(re.compile(f"/passes/{pass_id}/overview$"))
    expect(page.locator("#tab-overview")).to_have_attribute("aria-selected", "true")
    overview = admin.get(f"/v1/projects/{project}/passes/{pass_id}/overview").json()
    expect(page.locator("#o-total")).to_have_text(f"{overview['total_requests']:,}")
    fields = page.locator("#o-fields")
    expect(fields.locator("[data-field=client_id]")).to_have_text(client_id)
    expect(fields.locator("[data-field=agent_type]")).to_have_text("sourcing_agent")
    expect(fields.locator("[data-field=organization]")).to_have_text("Acme Corp")
    expect(fields.locator("[data-field=usage_type]")).to_have_text("AI Assistant")
    expect(fields.locator("[data-field=capabilities] li")).to_have_text(
        ["API Access (OAuth 2.0 client credentials)", "Data Read/Write"]
    )
    page.click("#copy-client-id")
    assert page.evaluate("navigator.clipboard.readText()") == client_id
    assert secret not in page.content()
    page.screenshot(path=str(artifacts_dir / "pass-overview-1280x800.png"), full_page=True)

    # -- Permissions: readable labels; an edit applies at the next exchange ------------
    page.locator("#tab-overview").focus()
    page.keyboard.press("ArrowRight")  # the tabs work from the keyboard
    expect(page).to_have_url(re.compile("/permissions$"))
    expect(page.locator("#tab-permissions")).to_be_focused()
    expect(page.locator("#p-scopes .scope-label")).to_have_text(["Read Data", "Write Data"])
    expect(page.locator("#p-access-level")).to_have_text("Standard")
    page.fill("#scopes-form [name=scopes]", "read:data admin:users!")
    page.click("#scopes-form button[type=submit]")
    expect(page.locator("#scopes-form [data-error-for=scopes]")).to_be_visible()
    page.fill("#scopes-form [name=scopes]", "read:data,admin:users")
    page.click("#scopes-form button[type=submit]")
    expect(page.locator("#scopes-saved")).to_contain_text("next token exchange")
    expect(page.locator("#p-scopes .scope-label")).to_have_text(["Read Data", "Admin Users"])
    stored = admin.get(f"/v1/projects/{project}/passes/{pass_id}").json()
    assert stored["scopes"] == ["read:data", "admin:users"]
    page.screenshot(path=str(artifacts_dir / "pass-permissions-1280x800.png"), full_page=True)

    # -- Usage: the Usage tab, at its own URL -------------------------------------------
    page.click("#tab-usage")
    expect(page).to_have_url(re.compile("/usage$"))
    expect(page.locator("#updated")).not_to_have_text("—")
    expect(page.locator("#log tbody tr:not(.details)")).to_have_count(1)  # the exchange
    expect(page.locator("#log tbody td[data-label=Endpoint]")).to_have_text("/oauth/token")
    page.screenshot(path=str(artifacts_dir / "pass-usage-1280x800.png"), full_page=True)

    # -- Settings, opened by its link ---------------------------------------------------
    page.goto(f"{ui_stack.base_url}/ui/projects/{project}/passes/{pass_id}/settings")
    expect(page.locator("#tab-settings")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#s-audit li").first).to_contain_text("Scopes Changed")

    def state() -> str:
        return str(admin.get(f"/v1/projects/{project}/passes/{pass_id}").json()["state"])

    page.click("#s-active")  # pause
    expect(page.locator("#s-active-label")).to_have_text("Inactive")
    assert state() == "inactive"
    assert exchange(ui_stack, client_id, secret) != 200  # a paused pass does not exchange
    page.click("#s-active")
    expect(page.locator("#s-active-label")).to_have_text("Active")
    assert state() == "active"

    # regenerate: a warning first, then the new secret once; the old one stops working
    page.locator("#panel-settings button.regenerate").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text("stops working at once")
    expect(dialog.locator("button[value=cancel]")).to_be_focused()
    dialog.locator("button[value=confirm]").click()
    new_json = page.locator("#secret-credentials pre[data-format=json]")
    expect(new_json).to_be_visible()
    new_secret = json.loads(new_json.inner_text())["client_secret"]
    assert new_secret != secret
    assert exchange(ui_stack, client_id, secret) == 401
    assert exchange(ui_stack, client_id, new_secret) == 200
    page.click("#secret-done")
    assert new_secret not in page.content()

    # edit metadata
    page.fill("#metadata-form [name=organization]", "Acme Europe")
    page.click("#metadata-form button[type=submit]")
    expect(page.locator("#metadata-saved")).to_have_text("Saved.")
    assert admin.get(f"/v1/projects/{project}/passes/{pass_id}").json()["organization"] == (
        "Acme Europe"
    )

    # revoke, then activate again
    page.click("#s-revoke")
    page.locator("#confirm-dialog button[value=confirm]").click()
    expect(page.locator("#pass-state")).to_have_text("Revoked")
    assert state() == "revoked"
    page.click("#s-activate")
    expect(page.locator("#pass-state")).to_have_text("Active")
    assert state() == "active"
    page.screenshot(path=str(artifacts_dir / "pass-settings-1280x800.png"), full_page=True)

    # delete: the dialog names the pass; cancelling keeps it, focus back on the button
    page.click("#s-delete")
    expect(dialog).to_contain_text(f"Delete {pass_id}")
    expect(dialog).to_contain_text("Invoice Bot")
    dialog.locator("button[value=cancel]").click()
    expect(page.locator("#s-delete")).to_be_focused()
    assert state() == "active"
    page.click("#s-delete")
    dialog.locator("button[value=confirm]").click()
    expect(page).to_have_url(re.compile(f"/ui/projects/{project}$"))
    expect(page.locator("#page-notice")).to_contain_text(f"{pass_id}) was deleted")
    assert admin.get(f"/v1/projects/{project}/passes/{pass_id}").status_code == 404
    assert exchange(ui_stack, client_id, new_secret) == 401
    context.close()


def test_expiry_warnings(
    browser: Browser, ui_stack: Stack, project: str, artifacts_dir: Path
) -> None:
    """A pass expiring in 10 days shows yellow, an expired one red, on its card and on
    its Permissions tab."""
    today = datetime.now(UTC).date()
    soon = ui_stack.create_pass(
        project, "Expiring Soon", valid_until=str(today + timedelta(days=10))
    )
    expired = ui_stack.create_pass(
        project,
        "Already Expired",
        valid_from=str(today - timedelta(days=40)),
        valid_until=str(today - timedelta(days=1)),
    )
    context = open_context(browser, ui_stack, project, DESKTOP)
    page = context.new_page()
    page.goto(f"{ui_stack.base_url}/ui/projects/{project}")
    for created, level, text in (
        (soon, "expiring", "Expires in 10 days"),
        (expired, "expired", "Expired on"),
    ):
        pass_id = created["pass"]["pass_id"]
        card = page.locator(f"#passes > li[data-pass-id='{pass_id}']")
        expect(card.locator("[data-field=expiry]")).to_have_class(f"expiry-{level}")
        expect(card.locator("[data-field=expiry]")).to_contain_text(text)
        colour = {"expiring": "rgb(154, 103, 0)", "expired": "rgb(207, 34, 46)"}[level]
        expect(card.locator("[data-field=expiry]")).to_have_css("color", colour)
        page.goto(f"{ui_stack.base_url}/ui/projects/{project}/passes/{pass_id}/permissions")
        expect(page.locator("#p-expiry")).to_have_class(f"expiry expiry-{level}")
        expect(page.locator("#p-expiry")).to_contain_text(text)
        page.go_back()
    expect(page.locator("#passes > li")).to_have_count(2)
    page.screenshot(path=str(artifacts_dir / "passes-expiry-1280x800.png"))

    # the list's error state, and its way out
    listing = f"**/v1/projects/{project}/passes?*"
    page.route(listing, lambda route: route.fulfill(status=503, body='{"detail": "down"}'))
    page.reload()
    expect(page.locator("#list-error")).to_contain_text("could not be loaded (down)")
    page.unroute(listing)
    page.click("#retry")
    expect(page.locator("#list-error")).to_be_hidden()
    expect(page.locator("#passes > li")).to_have_count(2)
    context.close()


def test_small_screens_and_every_screenshot(
    browser: Browser, ui_stack: Stack, project: str, artifacts_dir: Path
) -> None:
    """At 390 px nothing scrolls sideways, the activity log's rows are cards, and every
    control has a label; the screenshots of the list, the creation result and each tab."""
    context = open_context(browser, ui_stack, project, PHONE)
    page = context.new_page()
    page.goto(f"{ui_stack.base_url}/ui/projects/{project}")
    credentials = create_through_the_form(page, "Phone Agent", scopes="read:data,write:data")
    no_sideways_scroll(page)
    page.screenshot(path=str(artifacts_dir / "pass-created-390x844.png"))
    assert exchange(ui_stack, credentials["client_id"], credentials["client_secret"]) == 200
    page.click("#create-done")
    expect(page.locator(f"#passes > li[data-pass-id='{credentials['pass_id']}']")).to_be_visible()
    with ui_stack.client([project], PAGE_SCOPES) as admin:
        wait_for_activity(admin, f"/v1/projects/{project}/passes/{credentials['pass_id']}", 1)
    no_sideways_scroll(page)
    page.screenshot(path=str(artifacts_dir / "passes-390x844.png"), full_page=True)

    for tab in TABS:
        page.goto(
            f"{ui_stack.base_url}/ui/projects/{project}/passes/{credentials['pass_id']}/{tab}"
        )
        expect(page.locator(f"#tab-{tab}")).to_have_attribute("aria-selected", "true")
        if tab == "usage":
            page.click("#refresh")
            row = page.locator("#log tbody tr:not(.details)").first
            expect(row).to_be_visible()  # the token exchange
            # retried: a refresh may redraw the rows between two looks
            expect(row).to_have_css("display", "grid")
        no_sideways_scroll(page)
        unlabeled = page.evaluate("""() => [...document.querySelectorAll(
              '[role=tabpanel]:not([hidden]) :is(select, input, button, textarea)')]
            .filter(el => !el.labels?.length && !el.getAttribute('aria-label')
                          && !el.textContent.trim())
            .map(el => el.outerHTML)""")
        assert unlabeled == []
        page.screenshot(path=str(artifacts_dir / f"pass-{tab}-390x844.png"), full_page=True)
    context.close()


def test_overview_refreshes_like_the_usage_tab(
    browser: Browser, ui_stack: Stack, project: str
) -> None:
    """Every 30 s while shown; not while the browser tab is hidden, nor while another
    tab of the pass is shown; paused after three failures until a manual refresh."""
    pass_id = ui_stack.create_pass(project, "Polled Agent")["pass"]["pass_id"]
    context = open_context(browser, ui_stack, project, DESKTOP)
    page = context.new_page()
    page.clock.install()
    calls: list[str] = []
    api_path = f"/v1/projects/{project}/passes/{pass_id}/overview"
    page.on("request", lambda r: calls.append(r.url) if r.url.endswith(api_path) else None)
    page.goto(f"{ui_stack.base_url}/ui/projects/{project}/passes/{pass_id}/overview")
    expect(page.locator("#overview-updated")).not_to_have_text("—")
    assert len(calls) == 1

    def after(ms: int) -> int:
        page.clock.run_for(ms)
        page.wait_for_timeout(300)
        return len(calls)

    assert after(31_000) == 2
    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    assert after(61_000) == 2  # hidden
    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    page.click("#tab-permissions")
    assert after(61_000) == 2  # another tab is shown
    page.click("#tab-overview")  # shown again: refreshed at once
    expect(page.locator("#o-total")).to_have_text("0")
    assert len(calls) == 3
    page.wait_for_load_state("networkidle")  # that refresh is over

    page.route(f"**{api_path}", lambda route: route.fulfill(status=503, body='{"detail": "down"}'))
    for _ in range(3):
        after(30_000)
    expect(page.locator("#overview-status")).to_contain_text(
        "Auto-refresh paused after 3 failed refreshes"
    )
    failed = len(calls)
    assert after(90_000) == failed  # paused
    page.unroute(f"**{api_path}")
    page.click("#overview-refresh")
    expect(page.locator("#overview-status")).to_be_hidden()
    assert after(30_000) == failed + 2  # the manual one, and polling again
    context.close()


def test_a_late_answer_does_not_overwrite_a_later_search(
    browser: Browser, ui_stack: Stack, project: str
) -> None:
    """The list shows the latest search's answer whatever order the answers come in: the
    first search's, held back until the second's is shown, changes nothing."""
    ui_stack.create_pass(project, "Invoice Agent")
    ui_stack.create_pass(project, "Sourcing Agent")
    context = open_context(browser, ui_stack, project, DESKTOP)
    page = context.new_page()
    page.goto(f"{ui_stack.base_url}/ui/projects/{project}")
    expect(page.locator("#passes > li")).to_have_count(2)
    held: list[Route] = []
    # A lambda: Playwright marks its handler with an attribute, which a bound builtin refuses.
    page.route(f"**/v1/projects/{project}/passes?*search=invoice*", lambda r: held.append(r))
    page.fill("#find [name=search]", "invoice")
    page.click("#find button[type=submit]")
    page.fill("#find [name=search]", "nothing-matches")
    page.click("#find button[type=submit]")
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("#passes > li")).to_have_count(0)
    assert len(held) == 1
    with page.expect_response(lambda response: "search=invoice" in response.url):
        held[0].continue_()
    page.wait_for_timeout(300)  # the stale answer's JSON read and (before) its rendering
    expect(page.locator("#passes > li")).to_have_count(0)
    expect(page.locator("#empty")).to_be_visible()
    expect(page.locator("#main")).not_to_have_attribute("aria-busy", "true")
    context.close()
