"""The chat page in a real browser (Debian's chromium driven by Playwright) against real servers.

Skipped when /usr/bin/chromium is missing (``apt-get install chromium``; CI installs it). Screenshots
go to tests/artifacts/ (not committed).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.services import Services
from tests.helpers import LiveServer
from tests.service_fixtures import HOSTILE_TITLE

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
QUESTION = "Which papers quantize vision transformers after training?"
FOLLOW_UP = "Which of them adds noise to the activations?"
ANSWER_TIMEOUT_MS = 300_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
    ),
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def open_page(browser, url: str, width: int = 1280, height: int = 900):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.goto(url)
    return page, problems


def ask(page, question: str, turn_index: int):
    page.fill("#question", question)
    page.press("#question", "Enter")
    turn = page.locator(".turn.assistant").nth(turn_index)
    turn.wait_for(state="attached")
    return turn


def screenshot(page, name: str) -> None:
    """The whole page, in a window as tall as the page, so the sticky bars sit where they belong."""
    size = page.viewport_size
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(height, size["height"])})
    page.screenshot(path=str(ARTIFACTS / name))
    page.set_viewport_size(size)


def stored_abstract(services: Services, paper_id: str) -> str:
    return services.papers.get(ids=[paper_id], include=["documents"])["documents"][0]


def test_chat_page_with_the_real_model(browser, local_server: LiveServer, local_services: Services) -> None:
    from playwright.sync_api import expect

    page, problems = open_page(browser, local_server.url + "/")
    expect(page.locator("#status")).to_contain_text(re.compile(r"\d+ papers · local"))

    # 1. Ask: checked sentences stream in, then the final answer replaces them.
    turn = ask(page, QUESTION, 0)
    expect(page.locator(".turn.user").first).to_have_text(re.compile("You\\s*" + re.escape(QUESTION)))
    page.wait_for_selector(".turn.assistant[data-state=done]", timeout=ANSWER_TIMEOUT_MS)
    answer = turn.locator(".answer").inner_text()
    assert answer.strip()

    # 2. The cited papers are listed; clicking one shows its abstract.
    cited = turn.locator(".refs.cited button.paper-title")
    assert cited.count() >= 1, f"no cited paper shown; answer was: {answer!r}"
    title = cited.first.inner_text()
    paper_id = cited.first.get_attribute("data-paper-id")
    cited.first.click()
    panel = page.locator("#paper")
    expect(panel).to_have_attribute("data-state", "loaded")
    expect(page.locator("#paper-title")).to_have_text(title)
    assert page.locator("#paper-abstract").inner_text() == stored_abstract(local_services, paper_id)
    # ... with the evidence behind the citation highlighted: whole sentences of that abstract.
    from app.core.text import split_sentences

    marks = page.locator("#paper-abstract mark.evidence")
    assert marks.count() >= 1, "the evidence is highlighted"
    sentences = split_sentences(stored_abstract(local_services, paper_id))
    assert all(marks.nth(i).inner_text() in sentences for i in range(marks.count()))

    # 3. An [n] marker in the answer opens the paper it cites.
    markers = turn.locator(".answer button.marker")
    if markers.count():
        marker = markers.first
        number = int(marker.inner_text().strip("[]"))
        marker.click()
        expected = turn.locator(".refs.cited li").nth(number - 1).locator("button.paper-title").inner_text()
        expect(page.locator("#paper-title")).to_have_text(expected)
        expect(panel).to_have_attribute("data-state", "loaded")
    # 4. A follow-up continues the conversation and gets its own answer.
    second = ask(page, FOLLOW_UP, 1)
    expect(second).to_have_attribute("data-state", re.compile("done|failed"), timeout=ANSWER_TIMEOUT_MS)
    assert second.get_attribute("data-state") == "done", second.inner_text()
    assert second.locator(".answer").inner_text().strip()
    assert page.locator(".turn.user").count() == 2
    screenshot(page, "chat.png")

    # 5. At phone width the page still fits; the paper opens as a sheet over the conversation.
    page.click("#paper-close")
    expect(panel).to_be_hidden()
    page.set_viewport_size({"width": 390, "height": 844})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"horizontal overflow at phone width: {width}px"
    page.screenshot(path=str(ARTIFACTS / "phone.png"))
    second.locator("button.paper-title").last.click()
    expect(panel).to_have_attribute("data-state", "loaded")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "phone-paper.png"))
    assert problems == [], problems


def test_hostile_titles_render_as_text(browser, planted_server: LiveServer) -> None:
    from playwright.sync_api import expect

    page, problems = open_page(browser, planted_server.url + "/")
    turn = ask(page, QUESTION, 0)
    page.wait_for_selector(".turn.assistant[data-state=done]", timeout=60_000)

    titles = turn.locator("button.paper-title").all_inner_texts()
    assert HOSTILE_TITLE in titles, titles
    hostile = turn.locator("button.paper-title", has_text="onerror").first
    hostile.click()
    expect(page.locator("#paper")).to_have_attribute("data-state", "loaded")
    expect(page.locator("#paper-title")).to_have_text(HOSTILE_TITLE)
    expect(page.locator("#paper-abstract")).to_contain_text("<script>window.__pwned = true</script>")
    expect(page.locator("#paper-meta")).to_contain_text("<svg onload=alert(2)>")
    expect(page.locator("#paper-link")).to_be_hidden()  # a javascript: URL is never linked

    # Nothing from the corpus became markup: no image, svg, script, bold or italic element.
    for tag in ("img", "svg", "b", "i"):
        assert page.locator(tag).count() == 0, tag
    assert page.locator("script").count() == 1  # the page's own app.js
    assert page.evaluate("window.__pwned") is None
    screenshot(page, "injection.png")
    assert problems == [], problems


def test_service_errors_are_visible(browser, planted_server: LiveServer) -> None:
    from playwright.sync_api import expect

    page, _ = open_page(browser, planted_server.url + "/")
    # The service refuses the request (here: a question over its length limit, sent by another
    # client): the 422 reason is shown and the page stays usable.
    page.route(
        "**/chat",
        lambda route: route.continue_(
            post_data=json.dumps({"messages": [{"role": "user", "content": "x" * 5000}], "stream": True})
        ),
    )
    turn = ask(page, QUESTION, 0)
    expect(turn).to_have_attribute("data-state", "failed")
    expect(turn.locator(".notice.error")).to_contain_text("422")
    expect(turn.locator(".notice.error")).to_contain_text("too long")
    page.unroute("**/chat")

    # The service goes away: a network error is shown.
    page.route("**/chat", lambda route: route.abort())
    turn = ask(page, QUESTION, 1)
    expect(turn).to_have_attribute("data-state", "failed")
    expect(turn.locator(".notice.error")).to_contain_text("Could not reach the service")
    page.unroute("**/chat")

    # An `error` event mid-stream with no `done`: shown as a failure.
    def broken_stream(route):
        route.fulfill(
            status=200,
            headers={"content-type": "text/event-stream"},
            body='event: sources\r\ndata: []\r\n\r\nevent: delta\r\ndata: {"text": "Half an"}\r\n\r\n'
            'event: error\r\ndata: {"message": "the answer failed on the server; please retry"}\r\n\r\n',
        )

    page.route("**/chat", broken_stream)
    turn = ask(page, QUESTION, 2)
    expect(turn).to_have_attribute("data-state", "failed")
    expect(turn.locator(".notice.error")).to_contain_text("please retry")
    expect(turn.locator(".answer")).to_have_text("Half an")
    page.unroute("**/chat")

    # A refusal is shown as such.
    turn = ask(page, "What is the best recipe for chocolate chip cookies?", 3)
    expect(turn).to_have_attribute("data-state", "done")
    expect(turn.locator(".label")).to_have_text("No answer in the indexed papers")
    expect(turn).to_have_class(re.compile("refused"))
    # ... with the closest papers of the index, apart from citations, each one click from its abstract.
    closest = turn.locator(".refs.suggestions")
    expect(closest.locator("h3")).to_have_text("Closest papers in the index")
    expect(turn.locator(".refs.cited")).to_have_count(0)
    first = closest.locator("button.paper-title").first
    title = first.inner_text()
    first.click()
    expect(page.locator("#paper")).to_be_visible()
    expect(page.locator("#paper")).to_have_attribute("data-state", "loaded")
    assert title


def test_api_key_is_sent_when_set(browser, planted_server: LiveServer) -> None:
    from playwright.sync_api import expect

    page, problems = open_page(browser, planted_server.url + "/")
    seen: list[str | None] = []

    def record(route):
        seen.append(route.request.headers.get("authorization"))
        route.continue_()

    page.route("**/chat", record)
    turn = ask(page, QUESTION, 0)
    expect(turn).to_have_attribute("data-state", "done")
    page.click(".settings summary")
    page.fill("#api-key", "sk-test-123")
    page.press("#api-key", "Tab")  # change event: stored
    assert page.evaluate("localStorage.getItem('paperqa.apiKey')") == "sk-test-123"
    turn = ask(page, "And which use calibration data?", 1)
    expect(turn).to_have_attribute("data-state", "done")
    assert seen == [None, "Bearer sk-test-123"]
    assert problems == [], problems


def test_missing_key_asks_for_it(browser, planted_services: Services) -> None:
    """With PAPERQA_API_KEY set, a page without the key is told so, with Settings opened for it."""
    from playwright.sync_api import expect

    from app.http.app import create_app

    settings = planted_services.settings.model_copy(
        update={"api_key": "sk-page-key", "rate_limit_per_minute": 0}
    )
    with LiveServer(create_app(settings, planted_services)) as server:
        page, problems = open_page(browser, server.url + "/")
        expect(page.locator("#status")).not_to_have_class(re.compile("bad"))  # /health needs no key
        turn = ask(page, QUESTION, 0)
        expect(turn).to_have_attribute("data-state", "failed")
        expect(turn.locator(".notice.error")).to_contain_text("needs an API key")
        expect(page.locator("details.settings")).to_have_attribute("open", "")
        expect(page.locator("#api-key")).to_be_focused()
        page.fill("#api-key", "sk-page-key")
        page.press("#api-key", "Tab")
        turn = ask(page, QUESTION, 1)
        expect(turn).to_have_attribute("data-state", "done")
        screenshot(page, "api-key.png")
        # the failed request logged a 401 in the console; nothing else went wrong
        assert all("401" in problem for problem in problems), problems
