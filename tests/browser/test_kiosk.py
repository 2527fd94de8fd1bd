"""The kiosk in Chromium: tap → full-screen ticket with a QR code, a double tap makes one
ticket, back to the start screen by itself or on a tap; screenshots at the target sizes."""

from __future__ import annotations

import pytest
import requests

from tests.support import token

pytestmark = pytest.mark.slow

SIZES = {"tablet-landscape": (1280, 800), "tablet-portrait": (800, 1280),
         "portrait-1080p": (1080, 1920)}


@pytest.fixture(scope="module")
def kiosk(office):
    admin = token(office.url)
    r = requests.post(office.url + "/api/v1/devices", headers=admin,
                      json={"kind": "kiosk", "name": "Entrance"}, timeout=10)
    r.raise_for_status()
    device = r.json()
    r = requests.patch(f"{office.url}/api/v1/devices/{device['id']}", headers=admin,
                       json={"options": {"return_s": 3, "priority_button": True}}, timeout=10)
    r.raise_for_status()
    return device


def _kiosk_tickets(office) -> int:
    r = requests.get(office.url + "/api/v1/tickets", params={"source": "kiosk", "limit": 1},
                     headers=office.staff, timeout=10)
    r.raise_for_status()
    return int(r.json()["total"])


def _open_kiosk(open_page, office, kiosk, size):
    page, guard = open_page(f"/kiosk/{kiosk['id']}/pair?token={kiosk['token']}", *size)
    assert page.url == f"{office.url}/kiosk/{kiosk['id']}"  # the credential left the address
    page.wait_for_selector("#take .queue-btn")
    return page, guard


def test_tap_shows_the_ticket_with_a_qr_and_a_double_tap_makes_one(open_page, office, kiosk,
                                                                  artifacts):
    page, guard = _open_kiosk(open_page, office, kiosk, SIZES["tablet-landscape"])
    before = _kiosk_tickets(office)
    page.fill("input[name=name]", "Maija")
    page.press("input[name=name]", "Enter")  # the keyboard's "done" takes no number
    page.wait_for_timeout(300)
    assert _kiosk_tickets(office) == before and page.locator("#take").count() == 1
    page.locator(".queue-btn", has_text="General").dblclick()
    code = page.locator("#ticket-code")
    code.wait_for(timeout=5000)
    assert page.locator(".ticket-qr svg.qr path").count() == 1
    page.wait_for_timeout(500)  # any second request would have landed by now
    assert _kiosk_tickets(office) == before + 1
    qr_title = page.locator(".ticket-qr svg title").text_content() or ""
    assert qr_title.startswith(office.url + "/t/")
    r = requests.get(qr_title, timeout=10)
    assert r.ok and code.inner_text() in r.text
    # Back to the start screen by itself (this kiosk: 3 s).
    page.locator("#take").wait_for(timeout=6000)
    assert page.locator("#ticket-code").count() == 0
    # A new screen is a new key: the next tap is a new number.
    page.locator(".queue-btn", has_text="Laboratory").click()
    page.locator("#ticket-code").wait_for(timeout=5000)
    assert _kiosk_tickets(office) == before + 2
    page.wait_for_timeout(900)
    page.mouse.click(20, 20)  # a tap finishes it at once
    page.locator("#take").wait_for(timeout=2000)
    assert page.js_errors == []


@pytest.mark.parametrize("name", list(SIZES))
def test_screenshots_of_start_and_ticket(open_page, office, kiosk, artifacts, name):
    width, height = SIZES[name]
    page, _ = _open_kiosk(open_page, office, kiosk, (width, height))
    dims = page.evaluate("[document.documentElement.scrollWidth, "
                         "document.documentElement.scrollHeight]")
    assert dims == [width, height], dims  # no scrollbars
    page.screenshot(path=str(artifacts / f"kiosk-{width}x{height}-start.png"))
    page.locator(".queue-btn", has_text="General").click()
    page.locator("#ticket-code").wait_for(timeout=5000)
    dims = page.evaluate("[document.documentElement.scrollWidth, "
                         "document.documentElement.scrollHeight]")
    assert dims == [width, height], dims
    page.screenshot(path=str(artifacts / f"kiosk-{width}x{height}-ticket.png"))
    assert page.js_errors == []
