"""In a real browser: stored markup runs no script, the CSP is in force and blocks nothing the
pages need, and no page loads in a foreign frame (the probes' rows: tests/security/test_xss.py)."""

import pytest

from tests.factories import make_project, make_user
from tests.security.test_xss import pages, store_payloads
from tests.web.conftest import PASSWORD


@pytest.fixture
def stored(app, client):
    """The XSS probes' payload, stored everywhere."""
    return store_payloads(client)


def test_a_browser_runs_no_stored_script_and_the_csp_blocks_nothing_needed(
    app,
    stored,
    browser,
    live_server,
):
    context = browser.new_context(base_url=live_server)
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("dialog", lambda dialog: problems.append("dialog: " + dialog.message))
    page.goto("/login")
    page.fill("input[name=email]", "admin@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/projects")
    for path in pages(stored):
        page.goto(path)
        page.wait_for_load_state("load")
        assert page.evaluate("window.__xss") is None, path
    page.goto("/projects/news/annotate")
    page.wait_for_selector("body[data-keys=ready]")  # the nonce'd inline script ran
    assert [p for p in problems if "Content Security Policy" in p] == []
    assert [p for p in problems if p.startswith("dialog")] == []
    # An inline script without the nonce, injected at run time, is refused by the browser.
    page.evaluate(
        """() => { const s = document.createElement("script");
                   s.textContent = "window.__injected = 1"; document.head.appendChild(s); }"""
    )
    assert page.evaluate("window.__injected") is None
    assert any("Content Security Policy" in p for p in problems)
    context.close()


def test_no_page_loads_in_a_foreign_frame(app, browser, live_server):
    make_project()
    make_user("eng@example.com", PASSWORD, "engineer")
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live_server}/login")
    page.fill("input[name=email]", "eng@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/projects")
    # A page of another origin (about:blank here) frames the runs page with its Retrain button.
    frame_page = context.new_page()
    frame_page.set_content(f'<iframe src="{live_server}/projects/news/runs"></iframe>')
    frame_page.wait_for_timeout(1500)
    framed = [f for f in frame_page.frames if f != frame_page.main_frame]
    assert framed
    shown = "".join(
        f.evaluate("document.body ? document.body.innerText : ''")
        for f in framed
        if not f.url.startswith("chrome-error")
    )
    assert "Retrain now" not in shown
    # The same page opened directly shows the button (so the frame test can fail).
    page.goto(f"{live_server}/projects/news/runs")
    assert "Retrain now" in page.inner_text("body")
    context.close()
