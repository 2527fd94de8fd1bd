"""Staff sign-in for the pages: session cookie, CSRF on every state change, throttling."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from jonot_local.pages.session import staff_page

from .support import ADMIN, STAFF


@pytest.fixture
def guarded(app: Flask) -> Flask:
    """Two test-only pages behind the staff and admin checks."""

    @app.get("/_test/staff")
    @staff_page()
    def _staff() -> str:
        return "staff page"

    @app.get("/_test/admin")
    @staff_page("admin")
    def _admin() -> str:
        return "admin page"

    return app


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def sign_in(client, who=STAFF, next_="/_test/staff"):
    form = client.get("/signin").get_data(as_text=True)
    return client.post("/signin", data={"username": who[0], "password": who[1],
                                        "csrf_token": csrf_of(form), "next": next_})


def test_a_staff_page_sends_a_stranger_to_sign_in_and_back(guarded):
    client = guarded.test_client()
    r = client.get("/_test/staff?x=1")
    assert r.status_code == 302 and "/signin?next=" in r.headers["Location"]
    r = sign_in(client, next_="/_test/staff?x=1")
    assert r.status_code == 302 and r.headers["Location"] == "/_test/staff?x=1"
    assert client.get("/_test/staff").get_data(as_text=True) == "staff page"


def test_htmx_requests_get_401_with_a_redirect_for_the_whole_page(guarded):
    r = guarded.test_client().get("/_test/staff", headers={"HX-Request": "true"})
    assert r.status_code == 401 and r.headers["HX-Redirect"].startswith("/signin?next=")


def test_a_sign_in_without_the_csrf_token_is_refused(guarded):
    client = guarded.test_client()
    r = client.post("/signin", data={"username": STAFF[0], "password": STAFF[1]})
    assert r.status_code == 400 and r.mimetype == "text/html"
    assert client.get("/_test/staff").status_code == 302


def test_the_api_needs_no_csrf_token(client):
    r = client.post("/api/v1/auth/token", json={"username": ADMIN[0], "password": ADMIN[1]})
    assert r.status_code == 201


def test_a_wrong_password_says_so_and_keeps_the_name(guarded):
    client = guarded.test_client()
    r = sign_in(client, who=(STAFF[0], "not-the-password"))
    assert r.status_code == 401
    html = r.get_data(as_text=True)
    assert "Wrong username or password." in html and f'value="{STAFF[0]}"' in html


def test_repeated_wrong_passwords_are_throttled_on_the_page_too(guarded):
    client = guarded.test_client()
    statuses = [sign_in(client, who=(STAFF[0], "nope-nope")).status_code for _ in range(8)]
    assert statuses[-1] == 429 and 401 in statuses


def test_staff_cannot_open_an_admin_page(guarded):
    client = guarded.test_client()
    sign_in(client)
    r = client.get("/_test/admin")
    assert r.status_code == 403 and r.mimetype == "text/html"
    client2 = guarded.test_client()
    sign_in(client2, who=ADMIN)
    assert client2.get("/_test/admin").get_data(as_text=True) == "admin page"


def test_signing_out_ends_the_session_and_its_token(guarded):
    client = guarded.test_client()
    sign_in(client)
    page = client.get("/signin").get_data(as_text=True)
    assert client.post("/signout", data={"csrf_token": csrf_of(page)}).status_code == 302
    assert client.get("/_test/staff").status_code == 302


def test_sign_out_without_the_token_is_refused(guarded):
    client = guarded.test_client()
    sign_in(client)
    assert client.post("/signout").status_code == 400
    assert client.get("/_test/staff").status_code == 200


def test_next_never_leads_off_the_server(guarded):
    for bad in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        r = sign_in(guarded.test_client(), next_=bad)
        assert r.status_code == 302 and r.headers["Location"] == "/", bad


def test_a_changed_password_ends_page_sessions(guarded, store):
    from jonot_local.domain import users

    client = guarded.test_client()
    sign_in(client)
    with store.write() as tx:
        users.set_password(tx, STAFF[0], "another-password")
    assert client.get("/_test/staff").status_code == 302


def test_an_account_keeps_its_own_page_language(app, office):
    client = app.test_client()
    sign_in(client, next_="/desk")
    page = client.get("/desk", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert 'id="staff-language"' in page and "Choose your desk" in page
    token = csrf_of(page)
    r = client.post("/staff/language", data={"language": "fi", "csrf_token": token,
                                             "next": "/desk"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/desk")
    page = client.get("/desk", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert 'lang="fi"' in page and "Valitse" in page, "the account's language did not win"
    # Kept with the account: another browser (another session) gets it too.
    other = app.test_client()
    sign_in(other, next_="/desk")
    assert "Valitse" in other.get("/desk", headers={"Accept-Language": "en"}).get_data(
        as_text=True)
    # A language the pages do not have changes nothing; without the CSRF token: refused.
    client.post("/staff/language", data={"language": "xx", "csrf_token": token})
    assert "Valitse" in client.get("/desk").get_data(as_text=True)
    assert client.post("/staff/language", data={"language": ""}).status_code == 400
    client.post("/staff/language", data={"language": "", "csrf_token": token})
    assert "Choose your desk" in client.get(
        "/desk", headers={"Accept-Language": "en"}).get_data(as_text=True)
