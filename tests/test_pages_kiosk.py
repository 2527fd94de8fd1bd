"""The kiosk page: queue buttons, the htmx join (budget, CSRF, double taps), the ticket
screen with its QR code, kiosk options, and that a kiosk reaches no staff action."""

from __future__ import annotations

import re

import pytest
import segno

from jonot_local.domain import devices, queues, tickets

HX = {"HX-Request": "true"}


def form_of(html: str) -> dict[str, str]:
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    key = re.search(r'name="key" value="([^"]+)"', html)
    assert token and key, html
    return {"csrf_token": token.group(1), "key": key.group(1)}


def start(client, path="/kiosk"):
    r = client.get(path)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_data(as_text=True)


def join(client, queue_id, path="/kiosk", form=None, **extra):
    form = form or form_of(start(client, path))
    return client.post(f"{path}/join", data={**form, "queue_id": queue_id, **extra}, headers=HX)


def all_tickets(store):
    with store.read() as tx:
        return tx.all("SELECT id, code, source, name, priority FROM tickets ORDER BY number")


@pytest.fixture
def kiosk(store):
    with store.write() as tx:
        device, token = devices.register(tx, "kiosk", "Entrance")
    return {"id": device["id"], "token": token}


def test_start_screen_shows_open_and_closed_queues_in_kiosk_order(client, store, office):
    with store.write() as tx:
        queues.update_queue(tx, office["lab"].id, is_open=False)
    html = start(client)
    assert 'user-scalable=no' in html
    general = html.index("General")
    lab = html.index("Laboratory")
    assert general < lab
    closed = html[lab:].split("</button>", 1)[0]
    assert "Closed" in closed
    assert re.search(r'<button type="button" class="queue-btn closed" disabled', html)
    assert f'value="{office["a"].id}"' in html and f'value="{office["lab"].id}"' not in html
    # The buttons alone, for the live refresh.
    part = client.get("/kiosk?part=queues", headers=HX).get_data(as_text=True)
    assert "<html" not in part and "General" in part and "Closed" in part


def test_a_join_makes_a_kiosk_ticket_and_shows_code_and_a_qr_of_its_page(client, store,
                                                                         office):
    r = join(client, office["a"].id, name="  Maija  ")
    assert r.status_code == 201
    html = r.get_data(as_text=True)
    [row] = all_tickets(store)
    assert row["source"] == "kiosk" and row["name"] == "Maija" and not row["priority"]
    assert "<html" not in html  # the fragment
    assert f'id="ticket-code">{row["code"]}<' in html and "General" in html
    assert "You are next" in html and re.search(r"less than a minute|about \d+ minute", html)
    with store.read() as tx:
        ticket = tickets.get(tx, row["id"])
    url = f"http://localhost/t/{ticket.hash}"
    svg = re.search(r"<svg.*?</svg>", html, re.S).group(0)
    assert f"<title>{url}</title>" in svg
    path = re.search(r' d="([^"]+)"', svg).group(1)
    expected = segno.make(url, error="m").svg_inline(scale=1, border=2, omitsize=True)
    assert path in expected  # the same modules as the URL encoded afresh


def test_the_same_screen_key_twice_makes_one_ticket(client, store, office):
    form = form_of(start(client))
    first = join(client, office["a"].id, form=form)
    second = join(client, office["a"].id, form=form)
    assert first.status_code == second.status_code == 201
    assert len(all_tickets(store)) == 1
    code = all_tickets(store)[0]["code"]
    assert code in second.get_data(as_text=True)
    # A fresh screen (a new key) takes a new number.
    join(client, office["a"].id)
    assert len(all_tickets(store)) == 2


def test_a_join_without_the_csrf_token_is_refused(client, store, office):
    form = form_of(start(client))
    r = client.post("/kiosk/join", data={"key": form["key"], "queue_id": office["a"].id},
                    headers=HX)
    assert r.status_code == 400
    assert all_tickets(store) == []


def test_a_closed_queue_gets_a_calm_screen(client, store, office):
    form = form_of(start(client))
    with store.write() as tx:
        queues.update_queue(tx, office["a"].id, is_open=False)
    r = join(client, office["a"].id, form=form)
    assert r.status_code == 409
    assert "closed" in r.get_data(as_text=True) and all_tickets(store) == []


def test_an_unregistered_browser_over_the_anonymous_budget_gets_a_friendly_screen(
        client, store, office, app):
    limit = app.extensions["jonot"].join_budget.live_max
    for _ in range(limit):
        assert join(client, office["a"].id).status_code == 201
    r = join(client, office["a"].id)
    assert r.status_code == 429 and r.headers["Retry-After"]
    html = r.get_data(as_text=True)
    assert "Please ask at the front desk" in html and "problem-screen" in html
    assert "A00" not in html.split("problem-screen", 1)[1].split("</h1>")[0]
    assert len(all_tickets(store)) == limit
    # Without htmx it is a whole page, still 429.
    r = client.post("/kiosk/join", data={**form_of(start(client)), "queue_id": office["a"].id})
    assert r.status_code == 429 and "<html" in r.get_data(as_text=True)


def test_a_registered_kiosk_is_never_refused(client, store, office, kiosk):
    client.set_cookie("jonot_device", kiosk["token"])
    path = f"/kiosk/{kiosk['id']}"
    for _ in range(20):
        assert join(client, office["a"].id, path=path).status_code == 201
    assert len(all_tickets(store)) == 20
    assert {r["source"] for r in all_tickets(store)} == {"kiosk"}


def test_kiosk_options_pick_queues_language_priority_and_return_time(client, store, office,
                                                                     kiosk, admin_headers):
    r = client.patch(f"/api/v1/devices/{kiosk['id']}", headers=admin_headers, json={
        "options": {"queue_ids": [office["lab"].id], "priority_button": True, "language": "fi",
                    "return_s": 7}})
    assert r.status_code == 200, r.json
    assert r.json["options"] == {"queue_ids": [office["lab"].id], "priority_button": True,
                                 "language": "fi", "printing": True, "return_s": 7}
    with store.read() as tx:
        assert devices.kiosk_options(tx, kiosk["id"])["return_s"] == 7
    path = f"/kiosk/{kiosk['id']}"
    # Without the kiosk's cookie: its queues and language, but no priority button.
    html = start(client, path)
    assert "Laboratory" in html and "General" not in html and 'lang="fi"' in html
    assert 'name="priority"' not in html
    client.set_cookie("jonot_device", kiosk["token"])
    html = start(client, path)
    assert 'name="priority"' in html
    r = join(client, office["lab"].id, path=path, priority="1")
    assert r.status_code == 201 and 'data-return="7"' in r.get_data(as_text=True)
    assert all_tickets(store)[0]["priority"]
    # A queue the kiosk does not show cannot be joined through it.
    assert join(client, office["a"].id, path=path).status_code == 404
    assert len(all_tickets(store)) == 1


def test_kiosk_options_are_checked(client, office, kiosk, admin_headers, staff_headers, store):
    url = f"/api/v1/devices/{kiosk['id']}"
    for bad in ({"return_s": 1}, {"queue_ids": ["nope"]}, {"color": "red"},
                {"priority_button": "yes"}):
        r = client.patch(url, headers=admin_headers, json={"options": bad})
        assert r.status_code == 422, (bad, r.json)
    assert client.patch(url, headers=staff_headers, json={"options": {}}).status_code == 403
    with store.write() as tx:
        display, _ = devices.register(tx, "display", "Hall")
    r = client.patch(f"/api/v1/devices/{display['id']}", headers=admin_headers,
                     json={"options": {"printing": False}})
    assert r.status_code == 422
    # null restores a default
    client.patch(url, headers=admin_headers, json={"options": {"return_s": 30}})
    r = client.patch(url, headers=admin_headers, json={"options": {"return_s": None}})
    assert r.json["options"]["return_s"] == 12


def test_an_unknown_or_revoked_kiosk_is_not_found(client, store, kiosk):
    assert client.get("/kiosk/nope").status_code == 404
    with store.write() as tx:
        devices.revoke(tx, kiosk["id"])
    assert client.get(f"/kiosk/{kiosk['id']}").status_code == 404


def test_a_kiosk_reaches_no_desk_or_admin_action(app, client, store, office, kiosk):
    client.set_cookie("jonot_device", kiosk["token"])
    form = form_of(start(client, f"/kiosk/{kiosk['id']}"))
    headers = {"X-CSRFToken": form["csrf_token"]}
    refused = (302, 401, 403)
    # The staff API: the kiosk's credential is no staff credential.
    assert client.post(f"/api/v1/desks/{office['room1'].id}/call-next").status_code == 401
    assert client.patch(f"/api/v1/queues/{office['a'].id}",
                        json={"name": "X", "version": 1}).status_code == 401
    assert client.post("/api/v1/devices", json={"kind": "kiosk", "name": "x"}).status_code == 401
    # Every desk and admin page action (whatever the app has) refuses it.
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/desk", "/admin")):
            continue
        url = re.sub(r"<[^>]+>", "x", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            r = client.open(url, method=method, data=form, headers=headers)
            assert r.status_code in refused, (method, url, r.status_code)
            checked += 1
    with store.read() as tx:
        assert tx.one("SELECT count(*) AS n FROM tickets WHERE state != 'WAITING'")["n"] == 0


def test_the_pairing_link_makes_this_browser_the_registered_kiosk(client, store, office,
                                                                  kiosk, app):
    assert client.get(f"/kiosk/{kiosk['id']}/pair?token=wrong").status_code == 404
    with store.write() as tx:
        other, other_token = devices.register(tx, "kiosk", "Other")
    assert client.get(f"/kiosk/{kiosk['id']}/pair?token={other_token}").status_code == 404
    r = client.get(f"/kiosk/{kiosk['id']}/pair?token={kiosk['token']}")
    assert r.status_code == 302 and r.headers["Location"] == f"/kiosk/{kiosk['id']}"
    cookie = r.headers["Set-Cookie"]
    assert f"jonot_device={kiosk['token']}" in cookie and "HttpOnly" in cookie
    # Paired: beyond the anonymous budget.
    limit = app.extensions["jonot"].join_budget.live_max
    for _ in range(limit + 2):
        assert join(client, office["a"].id, path=f"/kiosk/{kiosk['id']}").status_code == 201


def test_racing_submissions_of_one_key_wait_for_the_first():
    import threading
    import time

    from jonot_local.kiosk_keys import KioskKeys

    keys = KioskKeys(ttl_s=60)
    made: list[str] = []

    def make() -> str:
        time.sleep(0.05)
        made.append(f"t{len(made)}")
        return made[-1]

    answers: list[tuple[str, bool]] = []
    threads = [threading.Thread(target=lambda: answers.append(keys.once("c", "k" * 20, make)))
               for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert made == ["t0"] and sorted(answers, key=lambda a: not a[1]) == [
        ("t0", True), *[("t0", False)] * 4]
    # Another client's same key, or a failed first try, makes its own.
    assert keys.once("d", "k" * 20, make) == ("t1", True)

    def fail() -> str:
        raise RuntimeError

    with pytest.raises(RuntimeError):
        keys.once("e", "k" * 20, fail)
    assert keys.once("e", "k" * 20, make) == ("t2", True)


def test_remembered_keys_expire():
    from jonot_local.kiosk_keys import KioskKeys

    now = [0.0]
    keys = KioskKeys(ttl_s=60, clock=lambda: now[0])
    assert keys.once("c", "k", lambda: "a") == ("a", True)
    now[0] = 30
    assert keys.once("c", "k", lambda: "b") == ("a", False)
    now[0] = 61
    assert keys.once("c", "k", lambda: "b") == ("b", True)
    assert len(keys._entries) == 1


def test_kiosk_tickets_are_printed_once_unless_the_kiosk_says_not(app, client, store, office,
                                                                  kiosk, admin_headers):
    printed: list[tuple[str, str | None]] = []

    class Printer:
        def print_ticket(self, ticket, device=None):
            printed.append((ticket["code"], device and device["id"]))
            return True

    app.extensions["jonot"].printing = Printer()
    client.set_cookie("jonot_device", kiosk["token"])
    path = f"/kiosk/{kiosk['id']}"
    form = form_of(start(client, path))
    join(client, office["a"].id, path=path, form=form)
    join(client, office["a"].id, path=path, form=form)  # the double tap: no second receipt
    assert printed == [(all_tickets(store)[0]["code"], kiosk["id"])]
    r = client.patch(path.replace("/kiosk/", "/api/v1/devices/"), headers=admin_headers,
                     json={"options": {"printing": False}})
    assert r.status_code == 200 and r.json["options"]["printing"] is False
    join(client, office["a"].id, path=path)
    assert len(printed) == 1 and len(all_tickets(store)) == 2
