"""The ticket page in Chromium on a phone-sized screen: live turn, cancel, weight, language."""

from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.slow

PHONE = (360, 740)
FIRST_LOAD_BUDGET = 60 * 1024


def _live(page) -> None:
    page.wait_for_selector("html[data-stream=live]", timeout=10_000)


def _drain(office) -> None:
    """Call everyone already waiting at the desk, so the next call is for the new ticket."""
    while requests.post(f"{office.url}/api/v1/desks/{office.desk['id']}/call-next",
                        headers=office.staff, json={}, timeout=10).status_code == 200:
        pass


def test_ticket_page_turns_to_your_turn_when_called(open_page, office, artifacts):
    _drain(office)
    ahead, ticket = office.join(), office.join()
    sizes: list[int] = []
    def count(request):
        s = request.sizes()
        sizes.append(s["responseBodySize"] + s["responseHeadersSize"])

    page, guard = open_page(f"/t/{ticket['hash']}", *PHONE, mobile=True, sound=False,
                            before=lambda p: p.on("requestfinished", count))
    _live(page)
    page.wait_for_load_state("networkidle")
    first_load = sum(sizes)
    assert 0 < first_load < FIRST_LOAD_BUDGET, first_load
    print(f"ticket page first load: {first_load} bytes in {len(sizes)} responses "
          "(the live stream excluded)")
    assert "You are number 2 in the queue" in page.inner_text("#position")
    page.screenshot(path=str(artifacts / "ticket-360x740-waiting.png"))
    page.evaluate("window.__notReloaded = true")

    office.call_next()  # the one ahead: now "you are next"
    page.locator("#position").filter(has_text="You are next").wait_for(timeout=5000)
    office.call_next()
    called = page.locator("#called")
    called.wait_for(state="visible", timeout=5000)
    assert "It's your turn" in called.inner_text() and "Go to Room 3" in called.inner_text()
    assert page.title().startswith("▶ " + ticket["code"])
    assert page.evaluate("window.__notReloaded") is True
    assert ahead["code"] != ticket["code"]
    page.wait_for_timeout(3000)  # the flash is over
    page.screenshot(path=str(artifacts / "ticket-360x740-called.png"))
    assert page.js_errors == []
    assert all(u.startswith(office.url) for u in guard.seen)


def test_cancel_asks_first_then_cancels(open_page, office, artifacts):
    ticket = office.join(office.lab)
    page, _ = open_page(f"/t/{ticket['hash']}", *PHONE, mobile=True)
    _live(page)
    page.click("#cancel-ask")
    confirm = page.locator("#cancel-confirm")
    assert confirm.is_visible()
    page.screenshot(path=str(artifacts / "ticket-360x740-cancel-confirm.png"))
    page.click("#cancel-no")  # changing one's mind changes nothing
    assert confirm.is_hidden()
    state = requests.get(f"{office.url}/api/v1/tickets/by-hash/{ticket['hash']}", timeout=10)
    assert state.json()["state"] == "WAITING"
    page.click("#cancel-ask")
    page.click("#cancel-yes")
    page.locator("#state").filter(has_text="Canceled").wait_for(timeout=5000)
    assert "This ticket was canceled" in page.inner_text("#ended")
    assert page.locator("#cancel").is_hidden()
    state = requests.get(f"{office.url}/api/v1/tickets/by-hash/{ticket['hash']}", timeout=10)
    assert state.json()["state"] == "CANCELED"


def test_unknown_ticket_page(open_page, office, artifacts):
    page, _ = open_page("/t/" + "q" * 22, *PHONE, mobile=True)
    assert "No ticket has this link" in page.inner_text("body")
    page.screenshot(path=str(artifacts / "ticket-360x740-unknown.png"))


def test_finnish_ticket_page_has_no_english(open_page, office, artifacts):
    from tests.test_pages_i18n import _english_fragments

    _drain(office)
    ticket = office.join()
    page, _ = open_page(f"/t/{ticket['hash']}?lang=fi", *PHONE, mobile=True)
    _live(page)
    english = [e.lower() for e in _english_fragments()]
    text = page.inner_text("body").lower()
    assert "vuoronumerosi" in text and [e for e in english if e in text] == []
    office.call_next()
    page.locator("#called").wait_for(state="visible", timeout=5000)
    text = page.inner_text("body").lower()
    assert "nyt on sinun vuorosi" in text and "mene: room 3" in text
    assert [e for e in english if e in text] == []
    assert "sinun vuorosi" in page.title()
    page.screenshot(path=str(artifacts / "ticket-360x740-called-fi.png"))
