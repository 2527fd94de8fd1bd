"""The desk page: sign-in, the waiting list, its fragments, every action through the page."""

from __future__ import annotations

import re

import pytest

from jonot_local.domain import tickets

from .support import STAFF


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


@pytest.fixture
def desk_client(client):
    """A client signed in as staff; ``desk_client.csrf`` is its CSRF token."""
    form = client.get("/signin").get_data(as_text=True)
    r = client.post("/signin", data={"username": STAFF[0], "password": STAFF[1],
                                     "csrf_token": csrf_of(form)})
    assert r.status_code == 302
    client.csrf = csrf_of(client.get("/signin").get_data(as_text=True))
    return client


@pytest.fixture
def waiting(store, office):
    """Three tickets waiting in General (A001 named, A002 with a label, A003), one in Lab."""
    with store.write() as tx:
        a1 = tickets.join(tx, office["a"].id, source="kiosk", name="Maija Mehiläinen")
        a2 = tickets.join(tx, office["a"].id, source="kiosk",
                          labels=[{"value": "Wheelchair", "color": "#ffd166"}])
        a3 = tickets.join(tx, office["a"].id, source="kiosk")
        l1 = tickets.join(tx, office["lab"].id, source="kiosk")
    return {"a1": a1, "a2": a2, "a3": a3, "l1": l1}


def post(client, path, htmx=True, **data):
    data.setdefault("csrf_token", client.csrf)
    headers = {"HX-Request": "true", "HX-Current-URL": "http://localhost/desk"} if htmx else {}
    return client.post(path, data=data, headers=headers)


def ticket(store, ticket_id):
    with store.read() as tx:
        return tickets.get(tx, ticket_id)


def test_the_desk_needs_sign_in(client, office):
    r = client.get("/desk")
    assert r.status_code == 302 and "/signin?next=/desk" in r.headers["Location"]
    r = client.get(f"/desk/{office['room2'].id}/waiting", headers={"HX-Request": "true"})
    assert r.status_code == 401 and r.headers["HX-Redirect"].startswith("/signin")


def test_an_expired_session_on_an_action_comes_back_to_the_desk_page(desk_client, store,
                                                                     office):
    with store.write() as tx:  # every sign-in ends (as when its token expires)
        tx.execute("DELETE FROM api_tokens")
    r = desk_client.post(f"/desk/{office['room2'].id}/call-next",
                    data={"csrf_token": desk_client.csrf},
                    headers={"HX-Request": "true",
                             "HX-Current-URL": f"http://localhost/desk/{office['room2'].id}"})
    assert r.status_code == 401
    assert r.headers["HX-Redirect"] == f"/signin?next=/desk/{office['room2'].id}"


def test_sign_in_lands_on_the_desk_choice_and_the_choice_is_remembered(desk_client, office):
    html = desk_client.get("/desk").get_data(as_text=True)
    assert "Choose your desk" in html and "Room 1" in html and "Room 2" in html
    r = post(desk_client, "/desk/choose", htmx=False, desk_id=office["room2"].id)
    assert r.status_code == 302 and r.headers["Location"] == f"/desk/{office['room2'].id}"
    assert "jonot_desk=" in r.headers["Set-Cookie"]
    html = desk_client.get("/desk").get_data(as_text=True)
    assert "<title>Room 2" in html
    # Signing out and in again keeps the desk: the cookie is not the session's.
    post(desk_client, "/signout", htmx=False)
    form = desk_client.get("/signin").get_data(as_text=True)
    r = desk_client.post("/signin", data={"username": STAFF[0], "password": STAFF[1],
                                          "csrf_token": csrf_of(form)})
    assert r.headers["Location"] == "/desk"
    assert "<title>Room 2" in desk_client.get("/desk").get_data(as_text=True)


def test_the_desk_renders_its_waiting_list(desk_client, office, waiting):
    html = desk_client.get(f"/desk/{office['room2'].id}").get_data(as_text=True)
    listed = html.split('id="waiting"', 1)[1]
    assert listed.index("A001") < listed.index("A002") < listed.index("A003") < listed.index("L001")
    assert "Maija Mehiläinen" in listed and "Wheelchair" in listed
    assert "General" in listed and "Laboratory" in listed and "3 waiting" in listed
    assert 'data-since="' in listed
    assert 'aria-live="polite"' in html and '<kbd>N</kbd>' in html
    assert "/api/v1/events?queue=" in html


def test_fragments_come_alone_for_htmx(desk_client, office, waiting):
    base = f"/desk/{office['room1'].id}"
    r = desk_client.get(base + "/waiting", headers={"HX-Request": "true"})
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and "<html" not in body and "A001" in body and "L001" not in body
    r = desk_client.get(base + "/current", headers={"HX-Request": "true"})
    body = r.get_data(as_text=True)
    assert "<html" not in body and "No patient at this desk." in body
    assert desk_client.get(base + "/waiting").status_code == 302


def test_call_next_recall_complete_and_no_show_through_the_page(desk_client, store, office,
                                                                  waiting):
    base = f"/desk/{office['room2'].id}"
    r = post(desk_client, base + "/call-next")
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and "A001" in body and "Maija Mehiläinen" in body
    assert 'hx-swap-oob="innerHTML"' in body  # the list comes along
    assert body.split('id="waiting"', 1)[1].count('<li class="row') == 3  # A002, A003, L001
    a1 = ticket(store, waiting["a1"].id)
    assert a1.state == "CALLED" and a1.desk_id == office["room2"].id
    r = post(desk_client, f"{base}/tickets/{a1.id}/recall", version=a1.version)
    assert "Recall (1)" in r.get_data(as_text=True)
    a1 = ticket(store, a1.id)
    assert a1.recall_count == 1
    post(desk_client, f"{base}/tickets/{a1.id}/complete", version=a1.version)
    assert ticket(store, a1.id).state == "COMPLETED"
    post(desk_client, base + "/call-next")
    a2 = ticket(store, waiting["a2"].id)
    assert a2.state == "CALLED"
    post(desk_client, f"{base}/tickets/{a2.id}/skip", version=a2.version)
    assert ticket(store, a2.id).state == "SKIPPED"


def test_the_staff_user_is_recorded_in_the_interaction(desk_client, store, office, waiting):
    base = f"/desk/{office['room2'].id}"
    post(desk_client, base + "/call-next")
    a1 = ticket(store, waiting["a1"].id)
    post(desk_client, f"{base}/tickets/{a1.id}/complete", version=a1.version)
    with store.read() as tx:
        staff = tx.one("SELECT id FROM users WHERE username = ?", (STAFF[0],))
        done = tickets.interactions(tx, a1.id)
    assert ticket(store, a1.id).called_by == staff["id"]
    assert [i.user_id for i in done] == [staff["id"]] and done[0].outcome == "completed"


def test_call_this_ticket_return_transfer_priority_and_reorder(desk_client, store, office,
                                                                waiting):
    base = f"/desk/{office['room2'].id}"
    a3 = waiting["a3"]
    post(desk_client, f"{base}/tickets/{a3.id}/call", version=a3.version)
    a3 = ticket(store, a3.id)
    assert a3.state == "CALLED" and a3.desk_id == office["room2"].id
    post(desk_client, f"{base}/tickets/{a3.id}/return", version=a3.version)
    a3 = ticket(store, a3.id)
    assert a3.state == "WAITING"
    post(desk_client, f"{base}/tickets/{a3.id}/call", version=a3.version)
    a3 = ticket(store, a3.id)
    post(desk_client, f"{base}/tickets/{a3.id}/transfer", version=a3.version,
         queue_id=office["lab"].id, to_front="1")
    a3 = ticket(store, a3.id)
    assert a3.state == "WAITING" and a3.queue_id == office["lab"].id
    with store.read() as tx:
        assert tickets.interactions(tx, a3.id)[-1].outcome == "transferred"
    # Priority on, then move A002 to the front of the normal ones: A002 first anyway.
    a2 = waiting["a2"]
    post(desk_client, f"{base}/tickets/{a2.id}/priority", version=a2.version, priority="priority")
    a2 = ticket(store, a2.id)
    assert a2.priority == "priority"
    post(desk_client, f"{base}/tickets/{a2.id}/priority", version=a2.version, priority="normal")
    a2 = ticket(store, a2.id)
    assert a2.priority == "normal"
    r = post(desk_client, f"{base}/tickets/{a2.id}/move", version=a2.version, to="up")
    listed = r.get_data(as_text=True).split('id="waiting"', 1)[1]
    assert listed.index("A002") < listed.index("A001")
    a2 = ticket(store, a2.id)
    r = post(desk_client, f"{base}/tickets/{a2.id}/move", version=a2.version, to="down")
    listed = r.get_data(as_text=True).split('id="waiting"', 1)[1]
    assert listed.index("A001") < listed.index("A002")


def test_notes_and_labels_are_saved_with_the_version(desk_client, store, office, waiting):
    base = f"/desk/{office['room2'].id}"
    a1 = waiting["a1"]
    r = desk_client.get(f"{base}/tickets/{a1.id}/edit", headers={"HX-Request": "true"})
    assert 'name="version" value="1"' in r.get_data(as_text=True)
    r = desk_client.post(f"{base}/tickets/{a1.id}/edit", headers={"HX-Request": "true"},
                         data={"csrf_token": desk_client.csrf, "version": "1",
                               "notes": "Needs an interpreter",
                               "label_value": ["VIP", "", "Finnish"],
                               "label_colour": ["#ff00ff", "#000000", "#0b5cad"],
                               "label_public": ["2"]})
    assert r.status_code == 200 and "Saved." in r.get_data(as_text=True)
    a1 = ticket(store, a1.id)
    assert a1.notes == "Needs an interpreter"
    assert a1.labels == [{"value": "VIP", "color": "#ff00ff", "public": False},
                         {"value": "Finnish", "color": "#0b5cad", "public": True}]
    # An edit from a stale form is refused with the banner, and the lists refresh.
    r = post(desk_client, f"{base}/tickets/{a1.id}/edit", version="1", notes="old")
    assert r.status_code == 409 and "changed by someone else" in r.get_data(as_text=True)
    assert r.headers["HX-Trigger"] == "desk-stale"


def test_every_action_needs_the_csrf_token(desk_client, store, office, waiting):
    base = f"/desk/{office['room2'].id}"
    a1 = waiting["a1"]
    for path in ("/call-next", f"/tickets/{a1.id}/call", f"/tickets/{a1.id}/priority",
                 f"/tickets/{a1.id}/move", f"/tickets/{a1.id}/edit"):
        r = desk_client.post(base + path, data={"version": "1", "priority": "priority"},
                             headers={"HX-Request": "true"})
        assert r.status_code == 400, path
    assert ticket(store, a1.id).state == "WAITING" and ticket(store, a1.id).version == 1
    r = desk_client.post("/desk/choose", data={"desk_id": office["room1"].id})
    assert r.status_code == 400


def test_an_empty_queue_says_so_in_the_banner(desk_client, office):
    r = post(desk_client, f"/desk/{office['room1'].id}/call-next")
    assert r.status_code == 404 and r.headers["HX-Trigger"] == "desk-stale"
    assert "No one is waiting in the queues of this desk." in r.get_data(as_text=True)
    html = desk_client.get(f"/desk/{office['room1'].id}").get_data(as_text=True)
    assert "No one is waiting" in html


def test_a_ticket_another_desk_took_says_so_in_the_banner(desk_client, store, office, waiting):
    a1 = waiting["a1"]
    with store.write() as tx:  # Room 1 calls it first
        tickets.call(tx, a1.id, office["room1"].id)
    r = post(desk_client, f"/desk/{office['room2'].id}/tickets/{a1.id}/call", version="1")
    assert r.status_code == 409 and r.headers["HX-Trigger"] == "desk-stale"
    assert "A001 was already called by another desk." in r.get_data(as_text=True)
    r = post(desk_client, f"/desk/{office['room2'].id}/tickets/{a1.id}/call")
    assert "A001 was already called by another desk." in r.get_data(as_text=True)
    listed = desk_client.get(f"/desk/{office['room2'].id}/waiting",
                             headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "A001" not in listed


def test_the_desk_page_in_finnish(desk_client, office, waiting):
    html = desk_client.get(f"/desk/{office['room2'].id}",
                           headers={"Accept-Language": "fi"}).get_data(as_text=True)
    assert "Kutsu seuraava" in html
