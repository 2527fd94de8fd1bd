"""The desk in Chromium: sign in, choose a desk, call, recall, complete, no-show; a second
desk's screen follows without a reload; keyboard shortcuts; screenshots at laptop and
desktop sizes."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.support import STAFF, token

pytestmark = pytest.mark.slow

LAPTOP = (1366, 768)
DESKTOP = (1920, 1080)


def _api(office: Any, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
    r = requests.request(method, office.url + "/api/v1" + path, headers=headers, json=body,
                         timeout=10)
    r.raise_for_status()
    return r.json()


@pytest.fixture(scope="module")
def second_desk(office: Any) -> dict[str, Any]:
    return _api(office, "POST", "/desks", token(office.url),
                {"name": "Room 4", "queue_ids": [office.queue["id"]]})


def _join(office: Any, name: str | None = None, **more: Any) -> dict[str, Any]:
    return _api(office, "POST", f"/queues/{office.queue['id']}/tickets", office.staff,
                {"name": name, **more})


def _drain(office: Any) -> None:
    """Nobody waiting or called at Room 3, so each test starts from an empty desk."""
    while True:
        r = requests.post(f"{office.url}/api/v1/desks/{office.desk['id']}/call-next",
                          headers=office.staff, json={}, timeout=10)
        if r.status_code != 200:
            break
    found = _api(office, "GET", "/tickets?state=CALLED&limit=500", office.staff)
    for t in found["items"]:
        _api(office, "POST", f"/tickets/{t['id']}/complete", office.staff, {})


def _sign_in_at(open_page: Any, desk_name: str, size: tuple[int, int]) -> Any:
    page, _ = open_page("/desk", *size, sound=False)
    page.fill("#username", STAFF[0])
    page.fill("#password", STAFF[1])
    page.click("button[type=submit]")
    page.get_by_role("button", name=desk_name).click()
    page.wait_for_selector("html[data-stream=live]", timeout=10_000)
    page.evaluate("window.__notReloaded = true")
    return page


def _row(page: Any, code: str) -> Any:
    return page.locator(f'#waiting li[data-code="{code}"]')


def test_a_desk_morning_and_a_second_desk_follows(open_page, office, second_desk, artifacts):
    _drain(office)
    first, second, third = (_join(office, n) for n in ("Aino Virtanen", "Eero Laine", None))
    desk = _sign_in_at(open_page, "Room 3", LAPTOP)
    other = _sign_in_at(open_page, "Room 4", LAPTOP)
    assert "Room 3" in desk.title() and "Room 4" in other.title()
    _row(other, first["code"]).wait_for(timeout=5000)

    desk.get_by_role("button", name="Call next").click()
    current = desk.locator("#current .patient")
    current.filter(has_text=first["code"]).wait_for(timeout=5000)
    assert "Aino Virtanen" in current.inner_text()
    _row(other, first["code"]).wait_for(state="detached", timeout=5000)  # live on Room 4

    desk.get_by_role("button", name="Recall").click()
    desk.get_by_role("button", name="Recall (1)").wait_for(timeout=5000)
    desk.get_by_role("button", name="Complete").click()
    desk.locator("#current").filter(has_text="No patient at this desk.").wait_for(timeout=5000)

    desk.locator("body").press("n")  # the shortcut calls the next one
    current.filter(has_text=second["code"]).wait_for(timeout=5000)
    _row(other, second["code"]).wait_for(state="detached", timeout=5000)
    desk.get_by_role("button", name="No-show").click()
    desk.locator("#current").filter(has_text="No patient at this desk.").wait_for(timeout=5000)

    late = _join(office, "Liisa Korhonen")  # a new ticket shows on both screens by itself
    _row(desk, late["code"]).wait_for(timeout=5000)
    _row(other, late["code"]).wait_for(timeout=5000)
    assert desk.evaluate("window.__notReloaded") and other.evaluate("window.__notReloaded")
    with requests.Session() as s:
        states = {t["code"]: t["state"] for t in s.get(
            office.url + "/api/v1/tickets?limit=500", headers=office.staff,
            timeout=10).json()["items"]}
    assert states[first["code"]] == "COMPLETED" and states[second["code"]] == "SKIPPED"
    assert states[third["code"]] == "WAITING"
    assert desk.js_errors == [] and other.js_errors == []


def test_shortcuts_do_not_fire_while_typing(open_page, office, second_desk):
    _drain(office)
    ticket = _join(office, "Matti Nieminen")
    desk = _sign_in_at(open_page, "Room 3", LAPTOP)
    _row(desk, ticket["code"]).wait_for(timeout=5000)
    desk.locator(f'#waiting li[data-code="{ticket["code"]}"] a.btn').click()
    desk.locator("#edit-notes").press("n")  # typing a note calls no one
    desk.wait_for_timeout(500)
    assert _row(desk, ticket["code"]).count() == 1
    assert desk.locator("#edit-notes").input_value().endswith("n")
    desk.get_by_role("link", name="Cancel").click()
    desk.locator("body").press("n")
    desk.locator("#current .patient").filter(has_text=ticket["code"]).wait_for(timeout=5000)


def test_a_ticket_another_desk_took_is_refused_with_a_banner_and_the_list_refreshed(
        open_page, office, second_desk):
    _drain(office)
    ticket = _join(office, "Matti Nieminen")
    # This screen hears nothing live, so its list goes stale until it acts.
    page, _ = open_page("/desk", *LAPTOP, sound=False,
                        before=lambda p: p.route("**/api/v1/events*", lambda r: r.abort()))
    page.fill("#username", STAFF[0])
    page.fill("#password", STAFF[1])
    page.click("button[type=submit]")
    page.get_by_role("button", name="Room 3").click()
    _row(page, ticket["code"]).wait_for(timeout=5000)
    _api(office, "POST", f"/tickets/{ticket['id']}/call", office.staff,
         {"desk_id": second_desk["id"]})
    page.get_by_role("button", name=f"Call {ticket['code']} now").click()
    page.locator("#banner").filter(has_text=f"{ticket['code']} was already called by another "
                                            "desk.").wait_for(timeout=5000)
    _row(page, ticket["code"]).wait_for(state="detached", timeout=5000)
    page.get_by_role("button", name="Call next").click()
    page.locator("#banner").filter(has_text="No one is waiting").wait_for(timeout=5000)


def test_a_slow_list_refresh_never_holds_back_the_current_panel(open_page, office, second_desk):
    """A change at this desk while a waiting-list fetch is still out shows at once: each
    panel fetches on its own, so a slow list never drops or delays the current panel."""
    _drain(office)
    desk = _sign_in_at(open_page, "Room 3", LAPTOP)
    held: list[Any] = []
    holding = [True]

    def hold(route: Any) -> None:
        if holding[0]:
            held.append(route)
        else:
            route.continue_()

    desk.route(f"**/desk/{office.desk['id']}/waiting", hold)
    with desk.expect_request(f"**/desk/{office.desk['id']}/waiting", timeout=5000):
        ticket = _join(office, "Kalle Salo")  # the list refresh this causes is held back
    _api(office, "POST", f"/tickets/{ticket['id']}/call", office.staff,
         {"desk_id": office.desk["id"]})
    desk.locator("#current .patient").filter(has_text=ticket["code"]).wait_for(timeout=5000)
    holding[0] = False
    for route in held:  # let the held list fetches go on; the row then leaves the list
        route.continue_()
    _row(desk, ticket["code"]).wait_for(state="detached", timeout=5000)
    assert desk.js_errors == []


def test_desk_screenshots(open_page, office, second_desk, artifacts):
    _drain(office)
    current = _join(office, "Aino Virtanen", labels=[{"value": "Interpreter", "color": "#0b5cad"}],
                    notes="Finnish sign language interpreter booked for 10:30.")
    _join(office, "Eero Laine", priority="priority",
          labels=[{"value": "Wheelchair", "color": "#ffd166"}])
    _join(office, "Liisa Korhonen")
    _join(office, None, labels=[{"value": "Lab first", "color": "#a4161a"}])
    _join(office, "Pekka Mäkinen-Hämäläinen")
    _api(office, "POST", f"/queues/{office.lab['id']}/tickets", office.staff, {"name": "Sanna Aho"})
    _api(office, "POST", f"/tickets/{current['id']}/call", office.staff,
         {"desk_id": office.desk["id"]})
    # The sign-in page, a refused sign-in and the desk choice, as staff first meet them.
    page, _ = open_page("/desk", *LAPTOP, sound=False)
    page.screenshot(path=str(artifacts / "signin-1366x768.png"))
    page.fill("#username", STAFF[0])
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    page.locator(".form-error").wait_for(timeout=5000)
    page.screenshot(path=str(artifacts / "signin-refused-1366x768.png"))
    page.fill("#username", STAFF[0])
    page.fill("#password", STAFF[1])
    page.click("button[type=submit]")
    page.get_by_role("button", name="Room 3").wait_for(timeout=5000)
    page.screenshot(path=str(artifacts / "desk-choose-1366x768.png"))
    assert page.js_errors == []
    for size, name in ((LAPTOP, "desk-1366x768.png"), (DESKTOP, "desk-1920x1080.png")):
        page = _sign_in_at(open_page, "Room 3", size)
        page.locator("#current").filter(has_text=current["code"]).wait_for(timeout=5000)
        page.wait_for_timeout(1200)  # the timers tick
        page.screenshot(path=str(artifacts / name))
        assert page.js_errors == []
