"""The TV display page: first paint from the display's state, its fragment, its language."""

from __future__ import annotations

import json
import re

import pytest

from jonot_local.domain import queues, tickets


@pytest.fixture
def called(store, office):
    """A043 waiting and A001..A003 taken, A001 then A002 called at Room 1 and Room 2."""
    with store.write() as tx:
        made = [tickets.join(tx, office["a"].id, source="kiosk") for _ in range(3)]
        tickets.join(tx, office["lab"].id, source="kiosk")
        tickets.call_next(tx, office["room1"].id)
        tickets.call_next(tx, office["room2"].id)
        lobby = queues.create_display(tx, name="Lab screen", queue_ids=[office["lab"].id])
    return {"tickets": made, "lab_display": lobby}


def _config(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="jonot-config">(.*?)</script>',
                      html, re.S)
    assert found
    return json.loads(found.group(1))


def test_display_shows_the_newest_call_large_and_the_earlier_ones(client, called):
    r = client.get("/display")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    hero = html.split('id="hero"', 1)[1].split("</section>", 1)[0]
    assert "A002" in hero and "Room 2" in hero and "General" in hero
    recent = html.split('id="recent"', 1)[1].split("</ol>", 1)[0]
    assert "A001" in recent and "Room 1" in recent and "A002" not in recent
    assert "General" in html and "Laboratory" in html and "1 waiting" in html
    config = _config(html)
    assert config["stream"] == "/api/v1/events" and config["dwell_ms"] >= 6000
    assert config["texts"]["say"] == "{code}, {desk}"
    assert [c["code"] for c in config["state"]["recent_calls"]] == ["A002", "A001"]


def test_display_without_javascript_reloads_itself(client):
    html = client.get("/display").get_data(as_text=True)
    assert '<noscript><meta http-equiv="refresh"' in html


def test_a_configured_display_shows_only_its_queues(client, called):
    display_id = called["lab_display"]["id"]
    html = client.get(f"/display/{display_id}").get_data(as_text=True)
    assert "Laboratory" in html and "General" not in html
    assert _config(html)["stream"] == f"/api/v1/events?display={display_id}"
    assert "No one has been called yet" in html


def test_unknown_display_is_a_404_page(client):
    r = client.get("/display/01NOSUCHDISPLAY0000000000")
    assert r.status_code == 404 and r.mimetype == "text/html"


def test_htmx_request_gets_the_board_fragment(client, called):
    r = client.get("/display", headers={"HX-Request": "true"})
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert 'id="hero"' in html and "A002" in html
    assert "<html" not in html and "<script" not in html


def test_display_language_from_the_address_then_setting_then_browser(tmp_path, called, app):
    client = app.test_client()
    assert 'lang="fi"' in client.get("/display", headers={"Accept-Language": "fi-FI,fi;q=0.9"}) \
        .get_data(as_text=True)
    assert 'lang="en"' in client.get("/display?lang=en", headers={"Accept-Language": "fi"}) \
        .get_data(as_text=True)
    app.extensions["jonot"].settings.display_language = "fi"
    html = client.get("/display", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert 'lang="fi"' in html and "Nyt vuorossa" in html
    assert _config(html)["lang"] == "fi"
    assert 'lang="en"' in client.get("/display?lang=en").get_data(as_text=True)


def test_display_has_no_english_left_in_finnish(client, called):
    html = client.get("/display?lang=fi").get_data(as_text=True)
    assert "Nyt vuorossa" in html and "Aiemmat kutsut" in html and "1 odottaa" in html
    text = re.sub(r"<script.*?</script>|<[^>]+>", " ", html, flags=re.S)
    assert "Now serving" not in text and "waiting" not in text
