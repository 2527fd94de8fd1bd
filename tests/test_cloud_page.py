"""The cloud's ticket page in-process: the office's page for the cloud's copy.

The same templates, script, styles, fonts and chime as the office's (served by the
cloud with versioned, cached URLs and nothing from elsewhere), in the patient's
language, and the cloud's own states: PENDING, REJECTED, RETIRED, a cancel waiting
for the clinic, and how fresh the copy is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jonot_local.sync.cloud import create_cloud_app
from jonot_local.sync.cloud.offices import add_office

from jonot_local.ids import new_ticket_hash
from jonot_local.pages.assets import IMMUTABLE
from jonot_local.pages.ticket import freshness

from .cloud_support import FakeOffice


class _Answer:
    def __init__(self, resp: Any) -> None:
        self.status_code, self.text, self._resp = resp.status_code, resp.text, resp

    def json(self) -> Any:
        return self._resp.get_json()


class _Client:
    """``requests.Session``'s few methods FakeOffice uses, over the app's test client."""

    def __init__(self, client: Any, token: str) -> None:
        self.client, self.headers = client, {"Authorization": f"Bearer {token}"}

    def post(self, url: str, json: Any = None, timeout: float = 0) -> _Answer:
        return _Answer(self.client.post(url, json=json, headers=self.headers))

    def get(self, url: str, params: Any = None, timeout: float = 0) -> _Answer:
        return _Answer(self.client.get(url, query_string=params, headers=self.headers))


@pytest.fixture
def cloud(tmp_path) -> Iterator[Any]:
    app = create_cloud_app({"data_dir": tmp_path, "hash_lookup_per_min": 10000,
                            "hash_miss_per_min": 3, "cloud_stale_after_s": 120})
    rt = app.extensions["jonot_cloud"]
    office_id, token = add_office(rt.store, "Harbour Clinic")
    client = app.test_client()
    office = FakeOffice("", token, office_id)
    office.session = _Client(client, token)  # type: ignore[assignment]
    queue_id, entry = office.queue()
    office.push([entry])
    yield client, office, queue_id, rt
    rt.close()


def _page(client: Any, ticket_hash: str, lang: str = "en", **kw: Any) -> tuple[int, str]:
    resp = client.get(f"/t/{ticket_hash}", headers={"Accept-Language": lang}, **kw)
    return resp.status_code, resp.get_data(as_text=True)


def _waiting(office: FakeOffice, queue_id: str, **fields: Any) -> tuple[str, str]:
    h = new_ticket_hash()
    tid, entry = office.ticket(queue_id, 7, ticket_hash=h, **fields)
    office.push([entry])
    return tid, h


def test_a_waiting_ticket_is_the_offices_page_with_its_freshness(cloud):
    client, office, queue_id, _ = cloud
    _, h = _waiting(office, queue_id)
    status, html = _page(client, h)
    assert status == 200
    assert 'class="ticket"' in html and 'id="status"' in html and "Harbour Clinic" in html
    assert ">A007<" in html and "You are next" in html and "Cancel my place" in html
    assert 'id="fresh"' in html and "Updated just now" in html and "fresh stale" not in html
    assert f"/api/v1/tickets/by-hash/{h}/events" in html
    assert f"/api/v1/tickets/by-hash/{h}/cancel" in html
    assert "http-equiv=\"refresh\" content=\"15\"" not in html


def test_the_page_loads_nothing_from_elsewhere(cloud):
    client, office, queue_id, _ = cloud
    _, h = _waiting(office, queue_id)
    _, html = _page(client, h)
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", html)
    assert "url(http" not in html and "@import" not in html
    assert not re.search(r"https?://(?!localhost)", html.replace(f"http://localhost/t/{h}", ""))


def test_its_assets_are_served_versioned_and_cached(cloud):
    client, office, queue_id, _ = cloud
    _, h = _waiting(office, queue_id)
    _, html = _page(client, h)
    urls = re.findall(r'(?:src|href)="(/[^"]+\?v=[0-9a-f]+)"', html)
    urls += re.findall(r'url\("(/[^"]+\?v=[0-9a-f]+)"\)', html)
    urls += re.findall(r'"chime": "(/[^"]+\?v=[0-9a-f]+)"', html)
    names = " ".join(urls)
    assert "ticket.css" in names and "ticket.js" in names and "woff2" in names
    assert "chime.wav" in names
    for url in urls:
        resp = client.get(url)
        assert resp.status_code == 200, url
        assert resp.headers["Cache-Control"] == IMMUTABLE, url
    unversioned = client.get(urls[0].split("?")[0])
    assert unversioned.headers["Cache-Control"] == "no-cache"


def test_the_page_speaks_the_patients_language(cloud):
    client, office, queue_id, _ = cloud
    _, h = _waiting(office, queue_id)
    _, fi = _page(client, h, lang="fi-FI,fi;q=0.9,en;q=0.5")
    assert '<html lang="fi">' in fi and "Olet seuraavana" in fi and "Päivitetty juuri" in fi
    _, en = _page(client, h, lang="fi", query_string={"lang": "en"})
    assert '<html lang="en">' in en and "You are next" in en


def test_a_remote_join_is_pending_then_numbered(cloud):
    client, office, queue_id, _ = cloud
    joined = client.post(f"/api/v1/queues/{queue_id}/tickets", json={}).get_json()
    status, html = _page(client, joined["hash"])
    assert status == 200 and "On its way" in html
    assert "your number appears here once the clinic has it" in html.lower()
    assert 'class="code none"' in html and "Cancel my place" in html  # hidden, not WAITING
    assert re.search(r'id="cancel" hidden', html)
    _, fi = _page(client, joined["hash"], lang="fi")
    assert "numerosi näkyy tässä" in fi.lower()
    [action] = office.actions()
    _, entry = office.ticket(queue_id, 12, ticket_id=joined["id"], source="remote")
    office.push([entry, office.result(action, "applied", ticket_id=joined["id"])])
    _, html = _page(client, joined["hash"])
    assert ">A012<" in html and "On its way" not in html.split('id="jonot-config"')[0]


def test_a_refused_join_says_why_in_words(cloud):
    client, office, queue_id, _ = cloud
    joined = client.post(f"/api/v1/queues/{queue_id}/tickets", json={}).get_json()
    [action] = office.actions()
    office.push([office.result(action, "rejected", "queue_closed")])
    _, html = _page(client, joined["hash"])
    body = html.split('id="jonot-config"')[0]
    assert "Not given" in body and "The clinic could not give you a number." in body
    assert "This queue is closed just now." in body
    assert '<p class="code none" id="code">–</p>' in body  # no number is coming
    assert re.search(r'id="fresh" role="status" hidden', body)  # over: freshness is moot
    _, fi = _page(client, joined["hash"], lang="fi")
    body = fi.split('id="jonot-config"')[0]
    assert "This queue is closed just now." not in body and "suljettu" in body


def test_a_cancel_is_requested_until_the_clinic_confirms(cloud):
    client, office, queue_id, _ = cloud
    tid, h = _waiting(office, queue_id)
    assert client.post(f"/api/v1/tickets/by-hash/{h}/cancel").status_code == 202
    _, html = _page(client, h)
    assert re.search(r'<p class="pending" id="cancel-pending" role="status" >'
                     r"Cancel requested; waiting for the clinic to confirm\.", html)
    assert re.search(r'id="cancel-ask" hidden', html)
    [action] = office.actions()
    _, canceled = office.ticket(queue_id, 7, state="CANCELED", version=2, ticket_id=tid,
                                canceled_by="customer")
    office.push([canceled, office.result(action, "applied", ticket_id=tid)])
    _, html = _page(client, h)
    assert "This ticket was canceled." in html and re.search(r'id="cancel" hidden', html)


def test_a_retired_number_says_the_clinic_no_longer_has_it(cloud):
    client, office, queue_id, rt = cloud
    _, h = _waiting(office, queue_id)
    with rt.store.write() as tx:
        tx.execute("UPDATE ticket SET state = 'RETIRED'")
    _, html = _page(client, h)
    assert "The clinic no longer has this number." in html and "No longer valid" in html


def test_a_quiet_clinic_is_said_to_be_quiet(cloud):
    client, office, queue_id, rt = cloud
    _, h = _waiting(office, queue_id)
    quiet = (datetime.now(UTC) - timedelta(minutes=7)).isoformat()
    with rt.store.write() as tx:
        tx.execute("UPDATE office SET last_push_at = ?", (quiet,))
    _, html = _page(client, h)
    assert "fresh stale" in html
    assert ("The clinic has not been heard from for 7 minutes; what you see may be out of "
            "date.") in html
    _, fi = _page(client, h, lang="fi")
    assert "7 minuuttiin" in fi
    assert re.search(r'<p class="called-fresh" id="called-fresh" >Vastaanotosta ei ole', fi)


def test_freshness_in_words(cloud):
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    ago = lambda s: (now - timedelta(seconds=s)).isoformat()  # noqa: E731
    client = cloud[0]
    with client.application.test_request_context("/?lang=en"):
        assert freshness(ago(30), 120, now) == {"stale": False, "text": "Updated just now"}
        assert freshness(ago(61), 120, now)["text"] == "Updated 1 minute ago"
        assert freshness(ago(180), 300, now)["text"] == "Updated 3 minutes ago"
        assert freshness(ago(121), 120, now)["stale"] is True
        assert freshness(None, 120, now)["stale"] is True


def test_unknown_and_throttled_links_have_the_pages_look(cloud):
    client, *_ = cloud
    status, html = _page(client, new_ticket_hash())
    assert status == 404 and 'class="card problem"' in html and "ticket.css" in html
    assert "No ticket has this link" in html
    for _ in range(5):
        status, html = _page(client, new_ticket_hash(), lang="fi")
    assert status == 429 and 'class="card problem"' in html
    assert 'http-equiv="refresh"' in html and '<html lang="fi">' in html
