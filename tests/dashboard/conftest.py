"""Fixtures for the dashboard's browser tests: the API served over HTTP on loopback (uvicorn in a thread, so the
test can stop and restart it), and headless Chromium (Debian's `chromium`, `make browser`) driven by Playwright.

`web` is the API app of the test's namespace and database, as `tests/api/conftest.py` builds it, but listening on a
free 127.0.0.1 port; `web.stop()` and `web.start()` take it down and bring it back on the same port. `browser` is one
Chromium per session; every test gets a fresh context (its own sessionStorage), so each starts signed out.
Screenshots are written to $SCREENSHOTS (`make screenshots`: docs/screenshots) when it is set.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright
from syncjob_api.core.config import Settings
from syncjob_api.main import create_app

from testbed.procs import free_port
from tests.api.conftest import STATIC_TOKENS, Api, api, make_api, settings_for, tokens_file  # noqa: F401 - fixtures
from tests.operator.conftest import (  # noqa: F401 - fixtures
    OperatorProcess,
    SyncJobs,
    operator,
    operator_env,
    sync_command,
    syncjobs,
)

ADMIN, VIEWER = STATIC_TOKENS["admin"][0], STATIC_TOKENS["viewer"][0]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DIST = Path(__file__).resolve().parents[2] / "api" / "syncjob_api" / "web" / "static" / "dist" / "index.html"


class WebApi:
    """The API app behind a real HTTP listener on 127.0.0.1."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> WebApi:
        config = uvicorn.Config(create_app(self.settings), host="127.0.0.1", port=self.port, log_level="warning",
                                timeout_graceful_shutdown=1, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"uvicorn-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise AssertionError("the API did not start listening")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(15)
            self._server = self._thread = None

    def get(self, path: str, token: str) -> httpx.Response:
        return httpx.get(f"{self.url}/api/scheduler{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)

    def post(self, path: str, token: str) -> httpx.Response:
        return httpx.post(f"{self.url}/api/scheduler{path}", headers={"Authorization": f"Bearer {token}"},
                          timeout=10)


@pytest.fixture
def web(settings_for: Callable[..., Settings], syncjob_crd: str) -> Iterator[WebApi]:
    if not DIST.is_file():
        pytest.fail(f"{DIST} is missing: `make web` builds the dashboard (make test does it first)")
    server = WebApi(settings_for(trigger_wait_seconds=2)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium (make test does it first)")
    with sync_playwright() as p:  # launch() gives Chromium a fresh temporary user-data-dir of its own
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN",
                                  timezone_id="Asia/Shanghai")
    context.set_default_timeout(15_000)
    # expect()'s own default is 5 s, which a loaded CI machine misses when a table waits on the API and the cache
    expect.set_options(timeout=15_000)
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


def shoot(page: Page, name: str) -> None:
    """A screenshot for docs/ when $SCREENSHOTS names a folder."""
    folder = os.environ.get("SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=False)


def sign_in(page: Page, web: WebApi, token: str, hash_: str = "#/jobs") -> None:
    page.goto(f"{web.url}/dashboard/{hash_}")
    page.fill("#token", token)
    page.click("button[type=submit]")
