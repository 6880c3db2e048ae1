"""The explorer in a real headless browser against `polos-gateway serve --demo`.

Playwright's Python package drives the system's Chromium (``make os-packages`` installs it);
no browser is downloaded. Every wait is a condition Playwright polls for (``expect``), never a
fixed sleep, and nothing asserts how long anything took. The demo's live trees start their
clock when first read, so each test opens a tree no other test touches.

A screenshot lands in ``test-output/explorer.png``; with ``EXPLORER_DOCS_SCREENSHOT=1`` it is
also copied to ``docs/explorer.png`` (committed by hand).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    BrowserContext,
    Locator,
    Page,
    WebSocket,
    expect,
    sync_playwright,
)

from gateway.demo.data import SAMPLES, demo_id
from tests.processes import ROOT, free_port, running

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = ROOT / "test-output"
DOCS_SCREENSHOT = ROOT / "docs" / "explorer.png"
# Generous: a loaded CI machine may be slow; the waits end as soon as the condition holds.
PAGE_WAIT_MS = 20_000
# The demo's live trees move over tens of seconds (gateway.demo.data).
LIVE_WAIT_MS = 90_000

RESEARCH_PATH = ["research_report", "planner_agent", "web_search", "summarise_page", "llm_call"]
LEAF = SAMPLES["a leaf five levels down"]
ROOT_ID = SAMPLES["a completed research tree (root)"]

expect.set_options(timeout=PAGE_WAIT_MS)


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    """`polos-gateway serve --demo` as a real process on a free loopback port."""
    port = free_port()
    with running("serve", "--demo", "--port", str(port), port=port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Chromium with a fresh profile of its own."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `make os-packages`"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
            color_scheme="light",
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    """A new tab; the test fails if the page's script threw."""
    tab = browser.new_page()
    thrown: list[str] = []
    tab.on("pageerror", lambda error: thrown.append(str(error)))
    try:
        yield tab
    finally:
        tab.close()
    assert thrown == []


def open_explorer(page: Page, gateway_url: str, execution_id: str | None = None) -> None:
    query = "" if execution_id is None else f"?id={execution_id}"
    page.goto(f"{gateway_url}/explorer{query}")


def tree_nodes(page: Page) -> Locator:
    return page.locator("#tree a.node-link")


def selected(page: Page) -> Locator:
    return page.locator("#tree a.node-link[aria-current='page']")


def detail_badge(page: Page) -> Locator:
    return page.locator("#details .execution-title .badge")


def test_a_demo_tree_opens_root_first_with_badges_and_names(page: Page, gateway_url: str) -> None:
    open_explorer(page, gateway_url)
    samples = page.locator("#sample-list a")
    expect(samples).to_have_count(len(SAMPLES))

    page.get_by_role("link", name=re.compile("a leaf five levels down")).click()

    expect(page).to_have_url(f"{gateway_url}/explorer?id={LEAF}")
    expect(tree_nodes(page).locator(".workflow")).to_have_text(RESEARCH_PATH)
    expect(tree_nodes(page).locator(".badge")).to_have_text(["COMPLETED"] * len(RESEARCH_PATH))
    expect(tree_nodes(page).locator(".badge").first).to_have_attribute("data-status", "COMPLETED")
    expect(selected(page).locator(".workflow")).to_have_text("llm_call")
    expect(page.locator("#details h3")).to_have_text("llm_call")
    expect(page.locator("#details .facts")).to_contain_text("Retries")
    expect(page.locator("#details [data-section='payload'] pre")).to_contain_text('"model"')
    expect(page.locator("#problems")).to_be_hidden()
    expect(page).to_have_title(re.compile(r"^llm_call · COMPLETED"))

    # Clicking a level above selects it and keeps the way back down.
    tree_nodes(page).first.click()
    expect(page).to_have_url(f"{gateway_url}/explorer?id={ROOT_ID}")
    expect(page.locator("#details h3")).to_have_text("research_report")
    expect(selected(page).locator(".workflow")).to_have_text("research_report")
    expect(tree_nodes(page).locator(".workflow")).to_have_text(RESEARCH_PATH)

    page.go_back()
    expect(page).to_have_url(f"{gateway_url}/explorer?id={LEAF}")
    expect(page.locator("#details h3")).to_have_text("llm_call")
    page.go_forward()
    expect(page.locator("#details h3")).to_have_text("research_report")


def test_every_status_shows_as_a_coloured_badge_with_its_name(page: Page, gateway_url: str) -> None:
    open_explorer(page, gateway_url, SAMPLES["a running support tree, waiting on approval"])
    badges = tree_nodes(page).locator(".badge")
    expect(badges).to_have_text(["RUNNING", "RUNNING", "WAITING", "WAITING", "QUEUED"])
    expect(page.get_by_role("button", name="Cancel execution…")).to_be_visible()

    open_explorer(page, gateway_url, SAMPLES["a failed pipeline step"])
    expect(tree_nodes(page).locator(".badge")).to_have_text(["FAILED", "FAILED", "FAILED"])
    expect(page.locator("#details [data-section='error'] pre")).to_contain_text("row 88121")
    expect(page.get_by_role("button", name=re.compile("Cancel"))).to_have_count(0)

    # The badge colours come from the style sheet, one per status (UNKNOWN included).
    colours = page.evaluate(
        """() => ["PENDING", "QUEUED", "CLAIMED", "RUNNING", "WAITING", "PENDING_CANCEL",
                  "COMPLETED", "FAILED", "CANCELLED", "UNKNOWN"].map((status) => {
            const probe = document.createElement("span");
            probe.className = "badge";
            probe.dataset.status = status;
            probe.textContent = status;
            document.body.append(probe);
            const colour = getComputedStyle(probe).backgroundColor;
            probe.remove();
            return colour;
        })"""
    )
    assert len(set(colours)) == 10, colours

    unknown = demo_id("pipeline/audit")
    open_explorer(page, gateway_url, unknown)
    expect(detail_badge(page)).to_have_text("UNKNOWN")
    expect(page.locator("#details .facts")).to_contain_text('upstream says "paused"')


def test_a_broken_walk_shows_its_error_beside_what_resolved(page: Page, gateway_url: str) -> None:
    open_explorer(page, gateway_url, SAMPLES["a parent loop"])

    expect(page.locator("#problems")).to_contain_text("CYCLE_DETECTED")
    expect(page.locator("#tree .node.broken")).to_contain_text("The path up breaks here")
    expect(page.locator("#details h3")).to_have_text("looping_agent")

    open_explorer(page, gateway_url, SAMPLES["an execution whose parent was deleted"])
    expect(page.locator("#problems")).to_contain_text("NOT_FOUND")
    expect(page.locator("#tree .node.broken")).to_be_visible()
    expect(tree_nodes(page)).to_have_count(1)


def test_a_bad_id_is_shown_as_text_never_as_markup(page: Page, gateway_url: str) -> None:
    open_explorer(page, gateway_url)
    hostile = '<img src=x onerror="document.title=`pwned`">'
    page.locator("#execution-id").fill(hostile)
    page.locator("#execution-id").press("Enter")

    expect(page.locator("#problems")).to_contain_text("BAD_USER_INPUT")
    expect(page.locator("#problems")).to_contain_text("<img src=x")
    expect(page.locator("#problems img")).to_have_count(0)
    expect(page.locator("#details")).to_contain_text("could not be shown")
    assert page.title() != "pwned"


def test_the_keyboard_alone_opens_an_execution_and_walks_up_its_path(
    page: Page, gateway_url: str
) -> None:
    open_explorer(page, gateway_url)
    expect(page.locator("#sample-list a")).to_have_count(len(SAMPLES))
    id_box = page.locator("#execution-id")
    for _ in range(5):
        page.keyboard.press("Tab")
        if id_box.evaluate("(box) => box === document.activeElement"):
            break
    expect(id_box).to_be_focused()
    page.keyboard.type(LEAF)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{gateway_url}/explorer?id={LEAF}")
    expect(tree_nodes(page)).to_have_count(len(RESEARCH_PATH))

    # Tab on into the path: the id box, Open, Credentials, the samples, then the path.
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("() => Boolean(document.activeElement.closest('#tree'))"):
            break
    expect(tree_nodes(page).first).to_be_focused()
    page.keyboard.press("End")
    expect(tree_nodes(page).last).to_be_focused()
    page.keyboard.press("ArrowUp")
    expect(tree_nodes(page).nth(3)).to_be_focused()
    page.keyboard.press("Enter")

    summarise = demo_id("research/planner/search-0/summarise")
    expect(page).to_have_url(f"{gateway_url}/explorer?id={summarise}")
    expect(page.locator("#details h3")).to_have_text("summarise_page")
    # The focus stays on the level just opened, ready for the next key.
    expect(tree_nodes(page).nth(3)).to_be_focused()
    expect(tree_nodes(page).nth(3)).to_have_attribute("aria-current", "page")


def test_pasted_credentials_go_with_every_request_and_stay_in_the_tab(
    page: Page, gateway_url: str
) -> None:
    open_explorer(page, gateway_url)
    page.locator("#credentials summary").click()
    page.locator("#api-key").fill("sk_demo_key")
    page.locator("#project-id").fill("demo-project")
    page.get_by_role("button", name="Use these").click()
    expect(page.locator("#credentials-state")).to_have_text("API key, project demo-project")

    with page.expect_request(lambda request: request.url.endswith("/graphql")) as sent:
        page.locator("#execution-id").fill(ROOT_ID)
        page.locator("#execution-id").press("Enter")
    headers = sent.value.all_headers()
    assert headers["authorization"] == "Bearer sk_demo_key"
    assert headers["x-project-id"] == "demo-project"
    expect(page.locator("#details h3")).to_have_text("research_report")

    stored = page.evaluate("() => [sessionStorage.length, localStorage.length, document.cookie]")
    assert stored == [1, 0, ""]
    page.get_by_role("button", name="Forget").click()
    expect(page.locator("#credentials-state")).to_have_text("cookie only")
    assert page.evaluate("() => sessionStorage.length") == 0


def _frames_sent(page: Page) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []

    def watch(socket: WebSocket) -> None:
        socket.on("framesent", lambda payload: frames.append(json.loads(payload)))

    page.on("websocket", watch)
    return frames


def test_a_running_execution_updates_live(page: Page, gateway_url: str) -> None:
    frames = _frames_sent(page)
    page.add_init_script(
        "sessionStorage.setItem('polos-explorer-credentials',"
        " JSON.stringify({apiKey: 'sk_live_key', projectId: 'demo-project'}))"
    )
    open_explorer(page, gateway_url, demo_id("live/agent/plan"))
    expect(tree_nodes(page).locator(".workflow")).to_have_count(2)
    expect(page.locator("#live-state")).to_contain_text("live: following")

    # This page's query started the tree's clock, so it found the step not yet final; it goes
    # queued -> claimed -> running -> completed over about ten seconds, pushed by the gateway.
    expect(detail_badge(page)).to_have_text(re.compile("^(QUEUED|CLAIMED|RUNNING)$"))
    expect(detail_badge(page)).to_have_text("COMPLETED", timeout=LIVE_WAIT_MS)
    expect(page.locator("#announcer")).to_have_text("planner_agent is now COMPLETED.")
    expect(page.locator("#details .facts")).to_contain_text("ran 6.00 s")
    expect(tree_nodes(page).first.locator(".badge")).to_have_text("RUNNING")
    expect(tree_nodes(page).first.locator(".live-dot")).to_be_visible()

    init = next(frame for frame in frames if frame.get("type") == "connection_init")
    assert init["payload"] == {
        "Authorization": "Bearer sk_live_key",
        "X-Project-ID": "demo-project",
    }
    subscribed = [frame for frame in frames if frame.get("type") == "subscribe"]
    assert {frame["payload"]["variables"]["id"] for frame in subscribed} >= {
        demo_id("live/agent"),
        demo_id("live/agent/plan"),
    }

    # The root, still running, selected: the picture of a live tree for the docs.
    tree_nodes(page).first.click()
    expect(page.locator("#details h3")).to_have_text("trip_planner_agent")
    expect(page.get_by_role("button", name="Cancel execution…")).to_be_visible()
    save_screenshot(page)


def test_cancel_moves_a_long_job_to_pending_cancel_then_cancelled(
    page: Page, gateway_url: str
) -> None:
    open_explorer(page, gateway_url, demo_id("live/backfill"))
    expect(detail_badge(page)).to_have_text(re.compile("QUEUED|CLAIMED|RUNNING"))

    page.get_by_role("button", name="Cancel execution…").click()
    page.get_by_role("button", name="Yes, cancel it").click()

    expect(page.locator("#details .action-result")).to_contain_text("PENDING_CANCEL")
    expect(detail_badge(page)).to_have_text("PENDING_CANCEL")
    expect(detail_badge(page)).to_have_text("CANCELLED", timeout=LIVE_WAIT_MS)
    expect(page.locator("#details .facts")).to_contain_text("by manual")
    expect(page.get_by_role("button", name=re.compile("Cancel"))).to_have_count(0)
    expect(selected(page).locator(".live-dot")).to_have_count(0)
    expect(page.locator("#live-state")).to_contain_text("not live")

    # A fresh load reads the same from the gateway.
    open_explorer(page, gateway_url, demo_id("live/backfill"))
    expect(detail_badge(page)).to_have_text("CANCELLED")


def save_screenshot(page: Page) -> None:
    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "explorer.png"
    # The whole page in one viewport (a full-page capture shifts the sticky path pane).
    height = page.evaluate("() => document.documentElement.scrollHeight")
    page.set_viewport_size({"width": 1280, "height": height})
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("EXPLORER_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(shot, DOCS_SCREENSHOT)
