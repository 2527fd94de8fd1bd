"""The admin pages: who may reach them, their fragments, CSRF, and every form through the
page — what works, and bad input answered in words with nothing typed lost."""

from __future__ import annotations

import re
from typing import Any

import pytest

from jonot_local.domain import devices, queues, users
from jonot_local.domain import office as office_settings
from jonot_local.domain.location import get_location

from .escpos_standin import EscposStandin, parse
from .support import ADMIN, STAFF
from .test_pages_i18n import _english_fragments, _visible

SECTIONS = ("queues", "desks", "displays", "devices", "staff", "settings", "system")
HX = {"HX-Request": "true", "HX-Current-URL": "http://localhost/admin/queues"}


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def sign_in(client: Any, who: tuple[str, str]) -> Any:
    form = client.get("/signin").get_data(as_text=True)
    r = client.post("/signin", data={"username": who[0], "password": who[1],
                                     "csrf_token": csrf_of(form)})
    assert r.status_code == 302
    client.csrf = csrf_of(client.get("/signin").get_data(as_text=True))
    return client


@pytest.fixture
def admin(client):
    """A client signed in as the admin; ``admin.csrf`` is its CSRF token."""
    return sign_in(client, ADMIN)


def post(client, path, htmx=True, **data):
    data.setdefault("csrf_token", client.csrf)
    return client.post(path, data=data, headers=HX if htmx else {})


def text(r) -> str:
    return r.get_data(as_text=True)


def banner(r) -> str:
    found = re.search(r'id="banner"[^>]*>(.*?)</div>', text(r), re.S)
    return found.group(1).strip() if found else ""


def field_errors(r) -> list[str]:
    return re.findall(r'class="field-error"[^>]*>([^<]*)<', text(r))


def refused(r, status, form) -> None:
    assert r.status_code == status, text(r)[:500]
    assert r.headers["X-Admin-Form"] == form


# -- who may come in -----------------------------------------------------------------------

def test_the_admin_pages_need_an_admin_sign_in(client, office):
    r = client.get("/admin/queues")
    assert r.status_code == 302 and "/signin?next=/admin/queues" in r.headers["Location"]
    r = client.get("/admin/queues", headers=HX)
    assert r.status_code == 401 and r.headers["HX-Redirect"].startswith("/signin")
    sign_in(client, STAFF)
    for section in SECTIONS:
        r = client.get(f"/admin/{section}")
        assert r.status_code == 403 and "needs an admin account" in text(r), section
    r = post(client, "/admin/queues", name="Sneaky", prefix="Z")
    assert r.status_code == 403 and "needs an admin account" in text(r)
    r = post(client, f"/admin/queues/{office['a'].id}/open", open="0")
    assert r.status_code == 403


def test_a_kiosk_or_a_ticket_holder_cannot_reach_any_admin_action(client, store, office):
    with store.write() as tx:
        kiosk, token = devices.register(tx, "kiosk", "Entrance")
    r = client.get(f"/kiosk/{kiosk['id']}/pair?token={token}")
    assert r.status_code == 302  # this browser is the paired kiosk now
    page = text(client.get(f"/kiosk/{kiosk['id']}"))
    assert "/admin" not in page
    csrf = csrf_of(page)  # the kiosk's own form token is no admin's
    for path, data in (("/admin/queues", {"name": "X", "prefix": "X"}),
                       (f"/admin/queues/{office['a'].id}/open", {"open": "0"}),
                       (f"/admin/devices/{kiosk['id']}/revoke", {}),
                       ("/admin/staff", {"username": "evil", "password": "x" * 12}),
                       ("/admin/settings", {"clinic": "Hacked"})):
        r = client.post(path, data={**data, "csrf_token": csrf}, headers=HX)
        assert r.status_code == 401 and "HX-Redirect" in r.headers, path
        r = client.post(path, data={**data, "csrf_token": csrf})
        assert r.status_code == 302 and "/signin" in r.headers["Location"], path
    # nor with the device credential on the API
    r = client.post("/api/v1/queues", json={"name": "X", "prefix": "X"},
                    headers={"X-Jonot-Device": token})
    assert r.status_code == 401
    with store.read() as tx:
        assert [q.name for q in queues.list_queues(tx)] == ["General", "Laboratory"]
        assert queues.get_queue(tx, office["a"].id).is_open
        assert devices.get(tx, kiosk["id"])["active"]
        assert get_location(tx)["name"] != "Hacked"
        assert "evil" not in [u["username"] for u in users.list_users(tx)]
    r = client.get("/t/" + "z" * 22)
    assert "/admin" not in text(r)


def test_a_form_without_the_csrf_token_is_refused_and_changes_nothing(admin, store):
    r = admin.post("/admin/queues", data={"name": "Radiology", "prefix": "R"}, headers=HX)
    assert r.status_code == 400 and "error-banner" in text(r) and "CSRF" in text(r)
    r = admin.post("/admin/queues", data={"name": "Radiology", "prefix": "R",
                                          "csrf_token": "forged"})
    assert r.status_code == 400
    with store.read() as tx:
        assert queues.list_queues(tx) == []


def test_every_section_is_a_page_and_a_fragment(admin, office):
    for section in SECTIONS:
        page = text(admin.get(f"/admin/{section}"))
        assert page.startswith("<!doctype html>") and 'aria-current="page"' in page, section
        assert 'href="/admin/reports"' in page and "X-CSRFToken" in page
        fragment = admin.get(f"/admin/{section}", headers=HX)
        assert fragment.status_code == 200
        assert "<html" not in text(fragment) and 'hx-swap-oob="true"' in text(fragment)
    assert admin.get("/admin").headers["Location"] == "/admin/queues"


# -- queues --------------------------------------------------------------------------------

def test_queues_add_edit_close_open_and_order(admin, store, office):
    r = post(admin, "/admin/queues", name="Radiology", prefix="r", colour="#aa3300", open="1")
    assert r.status_code == 200 and "Queue Radiology added." in text(r)
    with store.read() as tx:
        names = [q.name for q in queues.list_queues(tx)]
        new = next(q for q in queues.list_queues(tx) if q.name == "Radiology")
    assert names == ["General", "Laboratory", "Radiology"]
    assert (new.prefix, new.colour, new.is_open) == ("R", "#aa3300", True)
    r = post(admin, f"/admin/queues/{new.id}", name="X-ray", prefix="X", colour="#112233")
    assert "Queue X-ray saved." in text(r)
    r = post(admin, f"/admin/queues/{new.id}/open", open="0")
    assert "X-ray is closed" in text(r)
    with store.read() as tx:
        assert not queues.get_queue(tx, new.id).is_open
    post(admin, f"/admin/queues/{new.id}/open", open="1")
    post(admin, f"/admin/queues/{new.id}/move", to="up")
    post(admin, f"/admin/queues/{new.id}/move", to="up")
    post(admin, f"/admin/queues/{new.id}/move", to="up")  # already first: nothing moves
    with store.read() as tx:
        assert [q.name for q in queues.list_queues(tx)] == ["X-ray", "General", "Laboratory"]
        assert queues.get_queue(tx, new.id).is_open
    # the kiosk's buttons follow the same order
    kiosk = text(admin.get("/kiosk", headers={"HX-Request": "true"}))
    assert kiosk.index("X-ray") < kiosk.index("General") < kiosk.index("Laboratory")
    # without htmx: post, redirect, and the notice on the page
    r = post(admin, f"/admin/queues/{new.id}/open", htmx=False, open="0")
    assert r.status_code == 302 and r.headers["Location"] == "/admin/queues"
    assert "X-ray is closed" in text(admin.get("/admin/queues"))


@pytest.mark.parametrize("data, status, field, words", [
    ({"name": "", "prefix": "R"}, 422, "name", "is required"),
    ({"name": "Radiology", "prefix": "R2"}, 422, "prefix", "must be 1 to 3 letters A–Z"),
    ({"name": "Radiology", "prefix": "R", "colour": "red"}, 422, "colour",
     "must be a colour like #1f6feb"),
    ({"name": "Radiology", "prefix": "a"}, 409, "prefix",
     "Prefix A is already used by the queue General; pick another prefix."),
    ({"name": "R" * 81, "prefix": "R"}, 422, "name", "must be at most 80 characters"),
])
def test_a_refused_new_queue_keeps_what_was_typed(admin, store, office, data, status, field,
                                                  words):
    r = post(admin, "/admin/queues", **data)
    refused(r, status, "new-queue")
    assert words in banner(r) and any(words in e for e in field_errors(r))
    html = text(r)
    assert f'id="new-queue-{field}"' in html and 'aria-invalid="true"' in html
    for key, value in data.items():
        if key != "colour" or status != 422:
            assert f'id="new-queue-{key}" name="{key}" type' in html
        assert f'value="{value}"' in html, key
    with store.read() as tx:
        assert len(queues.list_queues(tx)) == 2
    # a plain form post (no JavaScript) gets the whole page, with the same words
    r = post(admin, "/admin/queues", htmx=False, **data)
    assert r.status_code == status and words in text(r) and "<!doctype html>" in text(r)


def test_a_refused_queue_edit_keeps_its_form_open(admin, office):
    r = post(admin, f"/admin/queues/{office['lab'].id}", name="Lab", prefix="A",
             colour="#123456")
    refused(r, 409, f"queue-{office['lab'].id}")
    assert "already used by the queue General" in banner(r)
    assert re.search(r'<details class="edit" open>\s*<summary>Edit Laboratory', text(r))
    assert 'value="Lab"' in text(r)


# -- desks ---------------------------------------------------------------------------------

def test_desks_add_reorder_their_queues_and_refuse_bad_input(admin, store, office):
    a, lab = office["a"].id, office["lab"].id
    r = post(admin, "/admin/desks", name="Room 9")
    refused(r, 422, "new-desk")
    assert "Queues: must include at least one queue" in banner(r) and 'value="Room 9"' in text(r)
    r = admin.post("/admin/desks", data={"csrf_token": admin.csrf, "name": "Room 9",
                                         "queue_ids": [a, lab], "pick_mode": "oldest"},
                   headers=HX)
    assert "Desk Room 9 added." in text(r)
    with store.read() as tx:
        desk = next(d for d in queues.list_desks(tx) if d.name == "Room 9")
    assert desk.queue_ids == [a, lab] and desk.pick_mode == "oldest"
    post(admin, f"/admin/desks/{desk.id}/queues", **{"do": "up", "queue_id": lab})
    with store.read() as tx:
        assert queues.get_desk(tx, desk.id).queue_ids == [lab, a]
    post(admin, f"/admin/desks/{desk.id}/queues", **{"do": "remove", "queue_id": lab})
    r = post(admin, f"/admin/desks/{desk.id}/queues", **{"do": "remove", "queue_id": a})
    refused(r, 422, f"desk-{desk.id}")
    assert "must include at least one queue" in banner(r)
    post(admin, f"/admin/desks/{desk.id}/queues", **{"do": "add", "queue_id": lab})
    with store.read() as tx:
        assert queues.get_desk(tx, desk.id).queue_ids == [a, lab]
    r = post(admin, f"/admin/desks/{desk.id}", name="room 1", pick_mode="queue_order")
    refused(r, 409, f"desk-{desk.id}")
    assert "A desk called room 1 already exists." in banner(r) and 'value="room 1"' in text(r)
    r = post(admin, f"/admin/desks/{desk.id}", name="Room 10", pick_mode="queue_order")
    assert "Desk Room 10 saved." in text(r)


# -- displays ------------------------------------------------------------------------------

def test_displays_add_and_edit(admin, store, office):
    r = post(admin, "/admin/displays", name="  ")
    refused(r, 422, "new-display")
    assert "Name: is required" in banner(r)
    r = admin.post("/admin/displays", data={"csrf_token": admin.csrf, "name": "Lobby",
                                            "queue_ids": [office["lab"].id]}, headers=HX)
    assert "Display Lobby added." in text(r)
    with store.read() as tx:
        display = queues.list_displays(tx)[0]
    assert display["queue_ids"] == [office["lab"].id]
    r = post(admin, f"/admin/displays/{display['id']}", name="Lobby TV")  # no queue: all
    assert "Display Lobby TV saved." in text(r)
    with store.read() as tx:
        assert queues.get_display(tx, display["id"]) | {"created_at": ""} == {
            "id": display["id"], "name": "Lobby TV", "queue_ids": [], "language": None,
            "created_at": ""}
    r = post(admin, f"/admin/displays/{display['id']}", name="Lobby TV", language="fi")
    assert "Display Lobby TV saved." in text(r)
    with store.read() as tx:
        assert queues.get_display(tx, display["id"])["language"] == "fi"
    r = post(admin, f"/admin/displays/{display['id']}", name="Lobby TV", language="x")
    assert r.status_code == 422 and "language" in banner(r).lower()


# -- devices -------------------------------------------------------------------------------

def _link(r) -> str:
    found = re.search(r'id="pairing-link"[^>]*value="([^"]+)"', text(r))
    assert found, text(r)[:2000]
    return found.group(1).replace("&amp;", "&")


def test_a_kiosk_is_registered_paired_by_its_link_renewed_and_revoked(admin, app, store):
    r = post(admin, "/admin/devices", kind="kiosk", name="Entrance")
    assert r.status_code == 201 and "Entrance is registered" in text(r)
    assert '<svg' in text(r) and "shown only now" in text(r)
    link = _link(r)
    device_id = re.search(r"/kiosk/([0-9A-Z]+)/pair\?token=", link).group(1)
    assert "Not paired yet" in text(admin.get("/admin/devices"))
    kiosk = app.test_client()
    r = kiosk.get(link.replace("http://localhost", ""))
    assert r.status_code == 302 and r.headers["Location"] == f"/kiosk/{device_id}"
    with store.read() as tx:
        assert devices.get(tx, device_id)["paired_at"]
    # a new link: the old one (and the browser paired with it) stops working
    r = post(admin, f"/admin/devices/{device_id}/renew")
    new_link = _link(r)
    assert new_link != link
    assert kiosk.get(link.replace("http://localhost", "")).status_code == 404
    with store.read() as tx:
        assert devices.get(tx, device_id)["paired_at"] is None
    r = post(admin, f"/admin/devices/{device_id}/revoke")
    assert "Entrance is revoked." in text(r)
    assert kiosk.get(new_link.replace("http://localhost", "")).status_code == 404
    r = post(admin, f"/admin/devices/{device_id}/renew")
    refused(r, 422, f"device-{device_id}")
    assert "register a new device instead" in banner(r)


def test_a_display_device_pairs_with_its_display_and_a_desk_pc_with_the_desk(admin, app, store):
    with store.write() as tx:
        lobby = queues.create_display(tx, name="Lobby")
    r = post(admin, "/admin/devices", kind="display", name="Lobby TV", display_id=lobby["id"])
    link = _link(r)
    assert "/display/pair/" in link
    r = app.test_client().get(link.replace("http://localhost", ""))
    assert r.status_code == 302 and r.headers["Location"] == f"/display/{lobby['id']}"
    assert "jonot_device=" in r.headers["Set-Cookie"]
    r = post(admin, "/admin/devices", kind="desk", name="Room 1 PC")
    r = app.test_client().get(_link(r).replace("http://localhost", ""))
    assert r.status_code == 302 and r.headers["Location"] == "/desk"
    assert app.test_client().get("/display/pair/01XYZ?token=nope").status_code == 404


@pytest.mark.parametrize("data, field, words", [
    ({"kind": "toaster", "name": "X"}, "kind", "must be one of kiosk, display, desk"),
    ({"kind": "kiosk", "name": ""}, "name", "is required"),
])
def test_a_refused_device_registration_keeps_what_was_typed(admin, store, data, field, words):
    r = post(admin, "/admin/devices", **data)
    refused(r, 422, "new-device")
    assert words in banner(r)
    assert f'value="{data["name"]}"' in text(r) or not data["name"]
    with store.read() as tx:
        assert devices.list_devices(tx) == []


def test_kiosk_options_and_printer_are_saved_and_bad_ones_explained(admin, store, office):
    with store.write() as tx:
        kiosk, _ = devices.register(tx, "kiosk", "Entrance")
    path = f"/admin/devices/{kiosk['id']}"
    form = {"csrf_token": admin.csrf, "queue_ids": [office["lab"].id], "priority_button": "1",
            "language": "fi", "return_s": "30", "printer": "tcp://192.0.2.10:9100"}
    r = admin.post(path, data=form, headers=HX)
    assert "Entrance saved." in text(r)
    with store.read() as tx:
        saved = devices.get(tx, kiosk["id"])
    assert saved["options"] == {"queue_ids": [office["lab"].id], "priority_button": True,
                                "language": "fi", "printing": False, "return_s": 30}
    assert saved["printer"] == "tcp://192.0.2.10:9100"
    for bad, words in ((("return_s", "500"), "must be a number from 3 to 120"),
                       (("return_s", "soon"), "must be a number from 3 to 120"),
                       (("printer", "lpt1"), "is not a printer address")):
        r = admin.post(path, data={**form, bad[0]: bad[1], "printing": "1"}, headers=HX)
        refused(r, 422, f"device-{kiosk['id']}")
        assert words in banner(r), banner(r)
        assert f'value="{bad[1]}"' in text(r)
        assert re.search(r'name="printing" value="1" checked', text(r))  # ticked stays ticked
    with store.read() as tx:
        assert devices.get(tx, kiosk["id"]) == saved  # nothing of a refused form was saved


# -- staff ---------------------------------------------------------------------------------

def test_accounts_add_reset_password_role_and_disable(admin, app, store):
    r = post(admin, "/admin/staff", username="nurse", display_name="Nina Nurse",
             password="long-enough-1", role="staff")
    assert "Account nurse added." in text(r)
    with store.read() as tx:
        nurse = next(u for u in users.list_users(tx) if u["username"] == "nurse")
    other = sign_in(app.test_client(), ("nurse", "long-enough-1"))
    assert other.get("/desk").status_code == 200
    r = post(admin, f"/admin/staff/{nurse['id']}/password", password="another-pass-2")
    assert "New password set for nurse" in text(r)
    assert other.get("/desk").status_code == 302  # the old session ended
    other = sign_in(app.test_client(), ("nurse", "another-pass-2"))
    r = post(admin, f"/admin/staff/{nurse['id']}/role", role="admin")
    assert "nurse is now admin." in text(r)
    assert other.get("/admin/queues").status_code == 200
    r = post(admin, f"/admin/staff/{nurse['id']}/active", active="0")
    assert "nurse is disabled" in text(r)
    assert other.get("/admin/queues").status_code == 302
    r = post(admin, f"/admin/staff/{nurse['id']}/active", active="1")
    assert "nurse can sign in again." in text(r)


@pytest.mark.parametrize("data, words", [
    ({"username": "has space", "password": "long-enough-1"},
     "must be 1 to 64 letters, digits or . _ @ -"),
    ({"username": "nurse2", "password": "short"}, "must be at least 8 characters"),
    ({"username": "Staff", "password": "long-enough-1"}, "The username Staff is already taken."),
])
def test_a_refused_new_account_keeps_what_was_typed(admin, store, data, words):
    r = post(admin, "/admin/staff", display_name="Nina", role="admin", **data)
    refused(r, 409 if "taken" in words else 422, "new-user")
    assert words in banner(r)
    assert f'value="{data["username"]}"' in text(r) and 'value="Nina"' in text(r)
    assert re.search(r'<option value="admin" selected>', text(r))
    with store.read() as tx:
        assert len(users.list_users(tx)) == 2


def test_the_last_admin_cannot_be_demoted_nor_disable_themselves(admin, store):
    with store.read() as tx:
        me = next(u for u in users.list_users(tx) if u["username"] == ADMIN[0])
    r = post(admin, f"/admin/staff/{me['id']}/role", role="staff")
    refused(r, 409, f"user-{me['id']}")
    assert "only active admin account" in banner(r)
    r = post(admin, f"/admin/staff/{me['id']}/active", active="0")
    refused(r, 422, f"user-{me['id']}")
    assert "cannot disable your own account" in banner(r)
    r = post(admin, f"/admin/staff/{me['id']}/password", password="short")
    refused(r, 422, f"password-{me['id']}")
    assert "must be at least 8 characters" in banner(r)
    with store.read() as tx:
        assert users.get_user(tx, me["id"])["role"] == "admin"
    assert admin.get("/admin/staff").status_code == 200


# -- settings ------------------------------------------------------------------------------

def test_settings_are_saved_and_used_at_once(admin, app, client, store, office):
    r = post(admin, "/admin/settings", clinic="Terveysasema Itä", language="fi",
             service_min="2,5", kiosk_return_s="25")
    assert "Asetukset tallennettu." in text(r)  # no language asked for: the office's, at once
    rt = app.extensions["jonot"]
    assert rt.settings.language == "fi" and rt.settings.default_service_s == 150
    with store.read() as tx:
        assert get_location(tx)["name"] == "Terveysasema Itä"
        assert office_settings.stored(tx) == {"language": "fi", "default_service_s": 150.0,
                                     "kiosk_return_s": 25}
    other = app.test_client()
    assert 'lang="fi"' in text(other.get("/kiosk"))  # no Accept-Language: the office's
    assert '"return_s": 25' in text(other.get("/kiosk"))
    assert "Terveysasema Itä" in text(other.get("/kiosk"))
    with store.write() as tx:
        from jonot_local.domain import tickets

        for _ in range(2):
            tickets.join(tx, office["a"].id, source="kiosk")
    listed = other.get("/api/v1/queues").json["items"]
    waits = {q["name"]: q["estimated_wait_s"] for q in listed}
    # two waiting, two desks serving General, 150 s each (the default would give 300 s)
    assert waits["General"] == pytest.approx(150, rel=0.01)


def test_bad_settings_are_explained_and_nothing_is_saved(admin, store):
    with store.read() as tx:
        before = get_location(tx)["name"]
    r = post(admin, "/admin/settings", clinic=" ", language="xx", service_min="soon",
             kiosk_return_s="1000")
    refused(r, 422, "settings")
    assert field_errors(r) == ["is required", "must be one of en, fi",
                               "must be a number of minutes, more than 0 and at most 1440",
                               "must be a number from 3 to 120"]
    assert 'value="soon"' in text(r) and 'value="1000"' in text(r)
    r = post(admin, "/admin/settings", clinic="New name", language="fi", service_min="5",
             kiosk_return_s="1000")
    refused(r, 422, "settings")
    with store.read() as tx:
        assert get_location(tx)["name"] == before and office_settings.stored(tx) == {}


# -- equipment and system ------------------------------------------------------------------

def test_system_shows_discovery_printers_and_sync(admin):
    html = text(admin.get("/admin/system"))
    assert "On the local network" in html and "not announced by this process" in html
    assert "Cloud sync" in html and "Sync is off" in html
    assert "No printer is set up" in html


@pytest.fixture
def printer():
    standin = EscposStandin()
    yield standin
    standin.close()


def test_the_test_print_button_prints_and_says_how_it_went(admin, app, printer):
    printing = app.extensions["jonot"].printing
    printing.start()
    try:
        r = post(admin, "/admin/system/test-print", printer=printer.uri)
        assert r.status_code == 200 and "The test page was printed" in text(r), banner(r)
        assert "Test print" in parse(printer.wait_for(1)[0]).text
        page = text(admin.get("/admin/system"))
        assert printer.uri in page and "Test print" in page and "Working" in page
        printer.refuse()
        r = post(admin, "/admin/system/test-print", printer=printer.uri)
        assert r.status_code == 200 and "did not print" in banner(r)
        r = post(admin, "/admin/system/test-print", printer="lpt1")
        refused(r, 422, "test-print")
        assert "is not a printer address" in banner(r) and 'value="lpt1"' in text(r)
        r = post(admin, "/admin/system/test-print", printer="")
        refused(r, 422, "test-print")
        assert "no printer is set up yet" in banner(r)
    finally:
        printing.stop()


# -- Finnish -------------------------------------------------------------------------------

def test_the_admin_pages_in_finnish_have_no_english(admin, store, office):
    with store.write() as tx:
        devices.register(tx, "kiosk", "Sisäänkäynti")
        queues.create_display(tx, name="Aula")
    fi = {"Accept-Language": "fi"}
    english = [e for e in _english_fragments()  # the accounts are called "admin" and "staff"
               if e not in (ADMIN[0], STAFF[0])]
    pages = {s: text(admin.get(f"/admin/{s}", headers=fi)) for s in SECTIONS}
    r = admin.post("/admin/queues", data={"csrf_token": admin.csrf, "name": "", "prefix": "A"},
                   headers={**HX, **fi})
    pages["refused"] = text(r)
    r = admin.post("/admin/devices", data={"csrf_token": admin.csrf, "name": "Uusi",
                                           "kind": "kiosk"}, headers={**HX, **fi})
    pages["pairing"] = text(r)
    for name, html in pages.items():
        if name not in ("refused", "pairing"):
            assert 'lang="fi"' in html, name
        visible = _visible(html)
        # whole words: Finnish "Kioskin" is not the English "Kiosk"
        leaks = [e for e in english if re.search(rf"(?<!\w){re.escape(e)}(?!\w)", visible)]
        assert leaks == [], (name, leaks)


# -- the same rules on the API -------------------------------------------------------------

def test_the_api_registers_a_display_device_for_a_display_and_renews_credentials(
        client, admin_headers, store):
    with store.write() as tx:
        lobby = queues.create_display(tx, name="Lobby")
    r = client.post("/api/v1/devices", headers=admin_headers,
                    json={"kind": "display", "name": "TV", "display_id": lobby["id"]})
    assert r.status_code == 201 and r.json["options"] == {
        "display_id": lobby["id"], "queue_ids": None, "language": None}
    assert r.json["paired_at"] is None
    old = r.json["token"]
    r = client.post("/api/v1/devices", headers=admin_headers,
                    json={"kind": "kiosk", "name": "K", "display_id": lobby["id"]})
    assert r.status_code == 422 and r.json["errors"][0]["field"] == "display_id"
    device_id = client.get("/api/v1/devices", headers=admin_headers).json["items"][0]["id"]
    r = client.post(f"/api/v1/devices/{device_id}/renew", headers=admin_headers)
    assert r.status_code == 200 and r.json["token"] != old
    with store.read() as tx:
        assert devices.for_token(tx, old) is None
        assert devices.for_token(tx, r.json["token"])["id"] == device_id
