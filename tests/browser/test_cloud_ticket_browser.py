"""The cloud's ticket page in Chromium, against a real cloud and a real office syncing to it.

A remote join shows PENDING, then its number without a reload; a remote cancel shows
"requested", then canceled; the office's call shows "your turn"; a quiet office is
said to be quiet. Every request stays on the cloud's origin (``conftest.Guard``).
The office is paused (SIGSTOP) to hold a relayed action on its way.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.browser.conftest import Office
from tests.cloud_support import CloudProcess, free_port
from tests.support import UNLIMITED_JOINS, LiveServer, seed_accounts
from tests.test_sync_e2e import CLOUD_ENV, add_office, office_env, wait_for

pytestmark = pytest.mark.slow

PHONE = (360, 740)


class Synced:
    """A cloud process, and an office (``conftest.Office``: queue, desk "Room 3") syncing to it.

    ``url`` is the cloud's: ``open_page`` opens the cloud's pages and guards its origin.
    """

    def __init__(self, cloud: CloudProcess, office: Office) -> None:
        self.cloud, self.office, self.url = cloud, office, cloud.url

    def pause_office(self) -> None:
        os.kill(self.office.server.proc.pid, signal.SIGSTOP)

    def resume_office(self) -> None:
        os.kill(self.office.server.proc.pid, signal.SIGCONT)

    def remote_join(self) -> dict[str, Any]:
        r = requests.post(f"{self.cloud.url}/api/v1/queues/{self.office.queue['id']}/tickets",
                          json={}, timeout=10)
        assert r.status_code == 202, r.text
        return r.json()

    def on_cloud(self, ticket_hash: str) -> dict[str, Any]:
        return requests.get(f"{self.cloud.url}/api/v1/tickets/by-hash/{ticket_hash}",
                            timeout=10).json()


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synced]:
    """Overrides conftest's ``office``: the pages opened are the cloud's."""
    tmp = tmp_path_factory.mktemp("cloudpage")
    cloud = CloudProcess(tmp / "cloud", env={**CLOUD_ENV, "JONOT_CLOUD_STALE_AFTER_S": "10"},
                         port=free_port()).start()
    server = None
    try:
        creds = add_office(tmp / "cloud", "")
        seed_accounts(tmp / "office")
        server = LiveServer(tmp / "office", env={**office_env(cloud.url, creds["token"]),
                                                 **UNLIMITED_JOINS}).start()
        synced = Synced(cloud, Office(server))
        first = synced.office.join()  # on the cloud once its queue is
        wait_for("the office's queue on the cloud",
                 lambda: requests.get(f"{cloud.url}/api/v1/tickets/by-hash/{first['hash']}",
                                      timeout=5).status_code == 200, timeout=30)
        yield synced
    finally:
        if server is not None:
            if server.proc and server.proc.poll() is None:
                os.kill(server.proc.pid, signal.SIGCONT)
            server.stop()
        cloud.stop()


def _live(page) -> None:
    page.wait_for_selector("html[data-stream=live]", timeout=10_000)


def test_remote_join_is_pending_then_numbered_without_reload(open_page, office, artifacts):
    office.pause_office()
    try:
        joined = office.remote_join()
        page, _ = open_page(f"/t/{joined['hash']}", *PHONE, mobile=True, sound=False)
        assert "On its way" in page.inner_text("#state")
        assert "your number appears here once the clinic has it" in \
            page.inner_text("#ended").lower()
        assert page.inner_text("#code") == "…" and page.locator("#cancel").is_hidden()
        page.evaluate("window.__notReloaded = true")
        page.screenshot(path=str(artifacts / "cloud-ticket-360x740-pending.png"))
    finally:
        office.resume_office()
    page.locator("#state").filter(has_text="Waiting").wait_for(timeout=15_000)
    code = office.on_cloud(joined["hash"])["code"]
    assert code and page.inner_text("#code") == code
    assert page.locator("#facts").is_visible() and page.locator("#cancel-ask").is_visible()
    assert page.evaluate("window.__notReloaded") is True
    assert "Updated just now" in page.inner_text("#fresh")
    page.screenshot(path=str(artifacts / "cloud-ticket-360x740-waiting.png"))
    assert page.js_errors == []


def test_remote_cancel_is_requested_then_canceled(open_page, office, artifacts):
    joined = office.remote_join()
    page, _ = open_page(f"/t/{joined['hash']}", *PHONE, mobile=True, sound=False)
    page.locator("#state").filter(has_text="Waiting").wait_for(timeout=15_000)
    _live(page)
    office.pause_office()
    try:
        page.click("#cancel-ask")
        page.click("#cancel-yes")
        pending = page.locator("#cancel-pending")
        pending.wait_for(state="visible", timeout=5000)
        assert "waiting for the clinic to confirm" in pending.inner_text()
        assert page.locator("#cancel-ask").is_hidden()
        assert office.on_cloud(joined["hash"])["state"] == "WAITING"
        page.screenshot(path=str(artifacts / "cloud-ticket-360x740-cancel-requested.png"))
    finally:
        office.resume_office()
    page.locator("#state").filter(has_text="Canceled").wait_for(timeout=15_000)
    assert "This ticket was canceled" in page.inner_text("#ended")
    assert page.locator("#cancel").is_hidden()
    assert page.js_errors == []


def test_the_offices_call_shows_your_turn(open_page, office, artifacts):
    o = office.office
    while requests.post(f"{o.url}/api/v1/desks/{o.desk['id']}/call-next", headers=o.staff,
                        json={}, timeout=10).status_code == 200:
        pass
    ticket = o.join()
    wait_for("the ticket on the cloud",
             lambda: office.on_cloud(ticket["hash"]).get("state") == "WAITING", timeout=15)
    page, guard = open_page(f"/t/{ticket['hash']}", *PHONE, mobile=True, sound=False)
    page.locator("#state").filter(has_text="Waiting").wait_for(timeout=15_000)
    _live(page)
    o.call_next()
    called = page.locator("#called")
    called.wait_for(state="visible", timeout=15_000)
    assert "It's your turn" in called.inner_text() and "Go to Room 3" in called.inner_text()
    assert page.title().startswith("▶ " + ticket["code"])
    page.wait_for_timeout(3000)  # the flash is over
    page.screenshot(path=str(artifacts / "cloud-ticket-360x740-called.png"))
    assert page.js_errors == []
    assert all(u.startswith(office.url) for u in guard.seen)


def test_a_quiet_office_is_said_to_be_quiet_and_the_page_speaks_finnish(open_page, office,
                                                                         artifacts):
    ticket = office.office.join()
    wait_for("the ticket on the cloud",
             lambda: office.on_cloud(ticket["hash"]).get("state") == "WAITING", timeout=15)
    office.pause_office()
    try:
        page, _ = open_page(f"/t/{ticket['hash']}?lang=fi", *PHONE, mobile=True, sound=False,
                            before=lambda p: p.clock.install())
        page.locator("#code").filter(has_text=ticket["code"]).wait_for(timeout=15_000)
        assert "Päivitetty juuri äsken" in page.inner_text("#fresh")
        page.clock.fast_forward("07:00")  # seven minutes of silence from the office
        fresh = page.locator("#fresh.stale")
        fresh.wait_for(timeout=5000)
        assert "ei ole kuulunut 7 minuuttiin" in fresh.inner_text()
        page.screenshot(path=str(artifacts / "cloud-ticket-360x740-stale-fi.png"))
        assert page.locator("#called-fresh").is_hidden()  # not called: the card says it
        assert page.js_errors == []
    finally:
        office.resume_office()
