"""Web fixtures: logged-in clients per role, a live server, and a headless Chromium."""

from __future__ import annotations

import os
import threading

import pytest
from werkzeug.serving import make_server

from tests.factories import make_user

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "secret-pass"


@pytest.fixture
def login(auth):
    """Create a user with `role` and log the test client in as them; return the user."""

    def _login(role: str = "annotator", email: str | None = None):
        user = make_user(email or f"{role}@example.com", PASSWORD, role)
        response = auth.login(user.email, PASSWORD)
        assert response.status_code == 302, response.text
        return user

    return _login


@pytest.fixture
def hx(client, auth):
    """Send a request the way htmx does: HX-Request and the session's CSRF header."""

    def _hx(method: str, url: str, **kwargs):
        headers = {"HX-Request": "true", "X-CSRF-Token": auth.csrf(), **kwargs.pop("headers", {})}
        return client.open(url, method=method, headers=headers, **kwargs)

    return _hx


@pytest.fixture
def live_server(app):
    """Serve the test app on 127.0.0.1 at a free port, in a thread, for the browser."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright, shared by the session (never downloaded)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium package "
            "(apt-get install chromium); the setup script installs it.",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh browser tab (own cookies) pointed at the live server."""
    context = browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    context.close()
