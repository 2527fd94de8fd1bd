"""Admin in Chromium against a real server: a queue added in admin appears on an open kiosk
at once, a queue closed there shows closed on it; devices pair by their link; keyboard use;
screenshots of every admin page at 1366×768 (tests/artifacts/admin-*.png)."""

from __future__ import annotations

import pytest

from tests.support import ADMIN

pytestmark = pytest.mark.slow

SIZE = (1366, 768)
SECTIONS = ("queues", "desks", "displays", "devices", "staff", "settings", "system")


def _sign_in(page, office, to="/admin"):
    page.goto(f"{office.url}/signin?next={to}")
    page.fill("#username", ADMIN[0])
    page.fill("#password", ADMIN[1])
    page.press("#password", "Enter")
    page.wait_for_url(f"{office.url}{to}**")


@pytest.fixture
def admin_page(open_page, office):
    page, guard = open_page("/signin", *SIZE)
    _sign_in(page, office, "/admin/queues")
    return page


def test_a_queue_added_in_admin_appears_on_the_open_kiosk_and_closing_shows_at_once(
        open_page, office, admin_page):
    kiosk, _ = open_page("/kiosk", *SIZE)
    kiosk.wait_for_selector("#take .queue-btn")
    assert kiosk.locator(".queue-btn", has_text="Radiology").count() == 0

    page = admin_page
    page.fill("#new-queue-name", "Radiology")
    page.fill("#new-queue-prefix", "r")
    page.click("#new-queue button[type=submit]")
    page.locator(".notice", has_text="Radiology").wait_for(timeout=5000)
    assert page.locator(".item-name", has_text="Radiology").count() == 1
    # The kiosk tab (never reloaded) shows it, live.
    kiosk.locator(".queue-btn:not(.closed)", has_text="Radiology").wait_for(timeout=5000)

    # Close it with the keyboard: focus the button, press Enter.
    close = page.get_by_role("button", name="Close Radiology")
    close.focus()
    page.keyboard.press("Enter")
    page.locator(".notice", has_text="closed").wait_for(timeout=5000)
    kiosk.locator(".queue-btn.closed", has_text="Radiology").wait_for(timeout=5000)
    assert kiosk.locator(".queue-btn.closed", has_text="Radiology").is_disabled()
    # … and open again.
    page.get_by_role("button", name="Open Radiology").click()
    kiosk.locator(".queue-btn:not(.closed)", has_text="Radiology").wait_for(timeout=5000)
    assert page.js_errors == [] and kiosk.js_errors == []


def test_a_refused_form_keeps_what_was_typed_and_says_why_in_the_banner(admin_page):
    page = admin_page
    page.fill("#new-queue-name", "Second general")
    page.fill("#new-queue-prefix", "A")  # General's prefix
    page.click("#new-queue button[type=submit]")
    banner = page.locator("#banner")
    banner.wait_for(state="visible", timeout=5000)
    assert "already used by the queue General" in banner.inner_text()
    assert page.input_value("#new-queue-name") == "Second general"
    assert page.input_value("#new-queue-prefix") == "A"
    assert page.locator("#new-queue-prefix[aria-invalid=true]").count() == 1
    focused = page.evaluate("document.activeElement.className")
    assert "form-error" in focused  # the message has the focus: a screen reader reads it
    # The next good save clears the banner.
    page.fill("#new-queue-prefix", "S")
    page.click("#new-queue button[type=submit]")
    page.locator(".notice", has_text="Second general").wait_for(timeout=5000)
    assert banner.is_hidden()


def test_a_display_device_pairs_by_its_link(open_page, office, admin_page):
    page = admin_page
    page.goto(office.url + "/admin/devices")
    page.select_option("#new-device-kind", "display")
    page.fill("#new-device-name", "Lobby TV")
    page.select_option("#new-device-display_id", label="Lobby")
    page.click("#new-device button[type=submit]")
    link = page.locator("#pairing-link")
    link.wait_for(timeout=5000)
    assert page.locator(".pairing-qr svg").count() == 1
    url = link.input_value()
    assert "/display/pair/" in url
    tv, _ = open_page("/display", *SIZE)
    tv.goto(url)
    assert tv.url == f"{office.url}/display/{office.display['id']}"  # the token left the address
    page.goto(office.url + "/admin/devices")
    row = page.locator(".item", has_text="Lobby TV")
    assert "Paired" in row.inner_text()


def test_screenshots_of_every_admin_page(admin_page, office, artifacts):
    page = admin_page
    for section in SECTIONS:
        page.goto(f"{office.url}/admin/{section}")
        page.wait_for_selector("#section")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width == SIZE[0], (section, width)  # no sideways scrolling
        page.screenshot(path=str(artifacts / f"admin-{section}-1366x768.png"))
        page.screenshot(path=str(artifacts / f"admin-{section}-1366-full.png"), full_page=True)
    # The pairing panel, as an admin sees it right after registering a kiosk.
    page.goto(f"{office.url}/admin/devices")
    page.fill("#new-device-name", "Entrance kiosk")
    page.click("#new-device button[type=submit]")
    page.locator("#pairing-link").wait_for(timeout=5000)
    page.screenshot(path=str(artifacts / "admin-devices-pairing-1366x768.png"))
    # Keyboard: Tab from the top reaches the nav first, with a visible focus ring.
    page.goto(f"{office.url}/admin/queues")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")
    page.screenshot(path=str(artifacts / "admin-focus-1366x768.png"))
    assert page.js_errors == []
