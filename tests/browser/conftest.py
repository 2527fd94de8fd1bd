"""Browser tests: Playwright driving Debian's chromium against a real ``jonot-local serve``.

Chromium is installed by ``ensure_chromium.sh`` when missing. Every page request
is routed through ``guard``: anything not on the server's origin is refused and
recorded, and the test fails on it. Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.support import UNLIMITED_JOINS, LiveServer, seed_accounts, token

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--autoplay-policy=no-user-gesture-required"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        subprocess.run(["sh", str(Path(__file__).with_name("ensure_chromium.sh"))], check=True)
    return CHROMIUM


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


class Office:
    """A live server with a queue, a desk "Room 3", a display, and staff headers."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.url = server.url
        admin = token(self.url)
        self.staff = token(self.url, ("staff", "staff-password"))
        self.queue = self._post("/queues", admin, {"name": "General", "prefix": "A"})
        self.lab = self._post("/queues", admin, {"name": "Laboratory", "prefix": "L"})
        self.desk = self._post("/desks", admin, {"name": "Room 3",
                                                 "queue_ids": [self.queue["id"], self.lab["id"]]})
        self.display = self._post("/displays", admin, {"name": "Lobby"})

    def _post(self, path: str, headers: dict[str, str] | None, body: dict[str, Any]) -> Any:
        r = requests.post(self.url + "/api/v1" + path, headers=headers or {}, json=body,
                          timeout=10)
        r.raise_for_status()
        return r.json()

    def join(self, queue: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._post(f"/queues/{(queue or self.queue)['id']}/tickets", None,
                          {"source": "kiosk"})

    def call_next(self) -> dict[str, Any]:
        return self._post(f"/desks/{self.desk['id']}/call-next", self.staff, {})

    def recall(self, ticket_id: str) -> dict[str, Any]:
        return self._post(f"/tickets/{ticket_id}/recall", self.staff, {})


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Office]:
    data_dir = tmp_path_factory.mktemp("browser") / "data"
    seed_accounts(data_dir)
    server = LiveServer(data_dir, env=UNLIMITED_JOINS).start()  # tests join from one address
    try:
        yield Office(server)
    finally:
        server.stop()


class Guard:
    """Routes every request of a page: the server's own go through, the rest are refused."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.seen: list[str] = []
        self.foreign: list[str] = []

    def __call__(self, route: Any) -> None:
        url = route.request.url
        self.seen.append(url)
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" == self.origin or parts.scheme == "data":
            route.continue_()
        else:
            self.foreign.append(url)
            route.abort()


@pytest.fixture
def open_page(browser: Any, office: Office) -> Iterator[Any]:
    """``open_page(path, width, height, mobile=, sound=, before=)`` → (page, guard).

    ``sound``: the display's "sound on" choice is already remembered; ``before(page)``
    runs before the page is opened (to listen to its requests).
    """
    contexts = []
    guards = []

    def _open(path: str, width: int, height: int, mobile: bool = False,
              sound: bool = True, base: str | None = None,
              before: Any = None) -> tuple[Any, Guard]:
        origin = base or office.url
        context = browser.new_context(
            viewport={"width": width, "height": height}, is_mobile=mobile, has_touch=mobile,
            device_scale_factor=2 if mobile else 1, locale="en-US")
        if sound:
            context.add_init_script("localStorage.setItem('jonot.sound', 'on')")
        guard = Guard(origin)
        context.route("**/*", guard)
        contexts.append(context)
        guards.append(guard)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.js_errors = errors  # type: ignore[attr-defined]
        if before is not None:
            before(page)
        page.goto(origin + path)
        return page, guard

    yield _open
    for guard in guards:
        assert guard.foreign == [], f"requests left the server: {guard.foreign}"
    for context in contexts:
        context.close()
