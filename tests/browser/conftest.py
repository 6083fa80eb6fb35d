"""The pack in ComfyUI's real frontend: a server per frontend (conftest's FRONTENDS) and one headless Chromium.

Playwright drives Debian's Chromium (/usr/bin/chromium); it never downloads a browser. The page reaches
the test server only: its requests to outside hosts fail at once wherever the suite runs (CI reaches the
package registries, this machine nothing), so the page behaves the same everywhere. The failures are
logged: the tests never assert a clean console.
"""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import Page, sync_playwright

from host_servers import host_harness
from pack_under_test import PACK_ROOT

EXAMPLES = PACK_ROOT / "example_workflows"
# A fresh user folder opens the template browser over the canvas on the first visit; this marks the
# first-run tutorial as done, as the frontend itself does after showing it once.
SETTINGS = {"Comfy.TutorialCompleted": True}


# The frontend ComfyUI 0.3.75 pins (installed with it), and the newest one the build installs apart and the
# server gets with --front-end-root: users update the frontend on its own. Every browser test runs on both.
FRONTENDS = ("1.32.9", host_harness.NEWER_FRONTEND.split("==")[1])


@pytest.fixture(scope="session", params=FRONTENDS, ids=[f"frontend-{version}" for version in FRONTENDS])
def frontend(request, comfy_host) -> str:
    return request.param


@pytest.fixture(scope="session")
def ui_server(start_server, comfy_host, frontend):
    """A server per frontend; the tests of one frontend all run before those of the next."""
    pinned = f"comfyui-frontend-package=={frontend}" in host_harness.HOST_PINS
    root = comfy_host.frontend_root(frontend)
    if not pinned and not root.is_dir():
        pytest.fail(f"no frontend {frontend} at {root}: run `python3 scripts/host.py build`")
    server = start_server(*([] if pinned else ["--front-end-root", str(root)]))
    for image in (EXAMPLES / "input").iterdir():
        shutil.copy(image, server.input_dir / image.name)
    for setting, value in SETTINGS.items():
        status, _ = server.post_json(f"/api/settings/{setting}", value)
        assert status == 200, f"the server refused the setting {setting}"
    return server


@pytest.fixture(scope="session")
def browser():
    if not host_harness.CHROMIUM.exists():
        pytest.fail(f"no {host_harness.CHROMIUM}: install Debian's chromium package for the browser tests")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(host_harness.CHROMIUM), headless=True, args=list(host_harness.CHROMIUM_ARGS)
        )
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def open_app(browser, ui_server, frontend):
    """Opens the app in a fresh context (its own local storage), ready: its start-up workflow loaded."""
    contexts = []

    def open_page() -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        contexts.append(context)
        context.add_init_script("localStorage.setItem('vueNodesBannerDismissed', 'true')")
        context.route(lambda url: not url.startswith(ui_server.url), lambda route: route.abort("internetdisconnected"))
        page = context.new_page()
        page.goto(ui_server.url)
        page.wait_for_function("window.app?.graph?.nodes.length > 0 && !!window.app.canvas", timeout=120_000)
        served = page.evaluate("window.__COMFYUI_FRONTEND_VERSION__")
        assert served == frontend, f"the page runs frontend {served}, not {frontend}"
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def page(open_app):
    page = open_app()
    yield page
    page.context.close()
