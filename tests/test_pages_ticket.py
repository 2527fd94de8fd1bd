"""The ticket page: the holder's view as a page, its fragment, its problem pages."""

from __future__ import annotations

import json
import re
import time

import pytest

from jonot_local.domain import tickets


@pytest.fixture
def waiting(store, office):
    with store.write() as tx:
        first = tickets.join(tx, office["a"].id, source="kiosk")
        second = tickets.join(tx, office["a"].id, source="kiosk")
        third = tickets.join(tx, office["a"].id, source="kiosk")
    return {"first": first, "second": second, "third": third}


def test_ticket_page_shows_code_position_wait_and_now_serving(client, store, office, waiting):
    with store.write() as tx:
        tickets.call_next(tx, office["room1"].id)
    r = client.get(f"/t/{waiting['third'].hash}")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert "A003" in html and "Waiting" in html
    assert "You are number 2 in the queue" in html
    assert re.search(r"about \d+ minutes?|less than a minute", html)
    assert "Now serving: A001" in html
    assert 'id="cancel-ask"' in html
    config = json.loads(re.search(r'id="jonot-config">(.*?)</script>', html, re.S).group(1))
    assert config["stream"].endswith(f"/tickets/by-hash/{waiting['third'].hash}/events")
    assert config["cancel"].endswith("/cancel")


def test_called_ticket_page_says_where_to_go(client, store, office, waiting):
    with store.write() as tx:
        tickets.call_next(tx, office["room1"].id)
    html = client.get(f"/t/{waiting['first'].hash}").get_data(as_text=True)
    called = html.split('id="called"', 1)[1].split("</div>", 1)[0]
    assert "hidden" not in called.split(">", 1)[0]
    assert "It's your turn" in called and "Go to Room 1" in called
    assert "<title>▶ A001 — your turn</title>" in html


@pytest.mark.parametrize("end, text", [
    ("cancel", "This ticket was canceled"),
    ("complete", "Your visit is done"),
    ("skip", "You were called but did not come"),
])
def test_ended_ticket_has_a_clear_page(client, store, office, waiting, end, text):
    with store.write() as tx:
        if end == "cancel":
            tickets.cancel(tx, waiting["first"].id, by="customer")
        else:
            called = tickets.call_next(tx, office["room1"].id)
            getattr(tickets, end)(tx, called.id)
    html = client.get(f"/t/{waiting['first'].hash}").get_data(as_text=True)
    assert text in html
    cancel = html.split('id="cancel"', 1)[1].split(">", 1)[0]
    assert "hidden" in cancel


def test_unknown_hash_is_a_404_page_with_the_apis_timing(tmp_path):
    from jonot_local.app import create_app

    app = create_app({"data_dir": tmp_path, "hash_lookup_floor_ms": 120})
    client = app.test_client()
    for path in ("/t/" + "x" * 22, "/t/short"):
        started = time.monotonic()
        r = client.get(path, headers={"Accept-Language": "en"})
        assert time.monotonic() - started >= 0.11
        assert r.status_code == 404 and r.mimetype == "text/html"
        assert "No ticket has this link" in r.get_data(as_text=True)
    api = client.get("/api/v1/tickets/by-hash/" + "x" * 22)
    assert api.status_code == 404


def test_rate_limited_client_gets_a_429_page_with_the_wait(tmp_path):
    from jonot_local.app import create_app

    app = create_app({"data_dir": tmp_path, "hash_lookup_floor_ms": 0, "hash_miss_per_min": 2})
    client = app.test_client()
    statuses = [client.get("/t/" + "y" * 22).status_code for _ in range(4)]
    assert statuses[-1] == 429
    r = client.get("/t/" + "y" * 22)
    assert r.status_code == 429 and r.mimetype == "text/html"
    wait = int(r.headers["Retry-After"])
    html = r.get_data(as_text=True)
    assert "Too many requests" in html and f"{wait} second" in html
    assert f'http-equiv="refresh" content="{wait}"' in html


def test_long_link_redirects_to_the_ticket_page(client, waiting):
    h = waiting["first"].hash
    r = client.get(f"/acme/01LOCATION/01QUEUE/{h}")
    assert r.status_code == 301 and r.headers["Location"].endswith(f"/t/{h}")
    assert client.get("/acme/a/b/not-a-hash").status_code == 404
    assert client.get(f"/api/v1/x/{h}").mimetype == "application/problem+json"
    assert client.get("/api/v1/auth/token").status_code == 405  # four segments, not a ticket
    assert client.get(f"/static/a/b/{h}").status_code == 404


def test_htmx_request_gets_the_status_fragment(client, waiting):
    r = client.get(f"/t/{waiting['second'].hash}", headers={"HX-Request": "true"})
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "A002" in html and "You are next" not in html
    assert "<html" not in html and 'id="facts"' in html


def test_first_in_line_is_told_they_are_next(client, waiting):
    assert "You are next" in client.get(f"/t/{waiting['first'].hash}").get_data(as_text=True)


def test_about_minutes_rounds():
    from jonot_local.pages.ticket import about_minutes

    with _request():
        assert about_minutes(None) == ""
        assert about_minutes(20) == "less than a minute"
        assert about_minutes(70) == "about 1 minute"
        assert about_minutes(150) == "about 2 minutes"  # 2.5 rounds to even
        assert about_minutes(17 * 60) == "about 15 minutes"
        assert about_minutes(23 * 60) == "about 25 minutes"


def _request():
    import tempfile

    from jonot_local.app import create_app

    app = create_app({"data_dir": tempfile.mkdtemp()})
    return app.test_request_context("/")
