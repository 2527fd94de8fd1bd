"""The join budget: a few live tickets and a join rate per anonymous client.

Staff (bearer token) and registered kiosks are never refused; on the LAN the
key is the client's address, behind trusted proxies a signed per-browser
cookie plus a looser per-address budget. Live counts are in the database and
survive a restart.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from jonot_local.api.join_budget import CLIENT_COOKIE
from jonot_local.app import create_app
from jonot_local.db import DB_FILENAME
from jonot_local.domain import queues, users

from .support import ADMIN, STAFF, LiveServer, seed_accounts, setup_office, token

PHONE = {"REMOTE_ADDR": "127.0.0.5"}


def _app(data_dir: Path, **settings: Any) -> Flask:
    return create_app({"data_dir": data_dir, "hash_lookup_floor_ms": 0, **settings})


@pytest.fixture
def world(tmp_path: Path) -> Any:
    """An office app (queues A and B), with admin/staff accounts, and its data dir."""
    data_dir = tmp_path / "data"
    app = _app(data_dir)
    store = app.extensions["jonot"].store
    with store.write() as tx:
        users.create_user(tx, ADMIN[0], ADMIN[1], role="admin")
        users.create_user(tx, STAFF[0], STAFF[1], role="staff")
        qa = queues.create_queue(tx, name="General", prefix="A").id
        qb = queues.create_queue(tx, name="Lab", prefix="B").id
    yield app, data_dir, [qa, qb]
    store.close()


def _join(app: Flask, queue_id: str, environ: dict[str, str] | None = None,
          headers: dict[str, str] | None = None, client: Any = None) -> Any:
    client = client or app.test_client()
    return client.post(f"/api/v1/queues/{queue_id}/tickets", json={},
                       environ_base=environ or PHONE, headers=headers or {})


def _bearer(app: Flask, who: tuple[str, str] = STAFF) -> dict[str, str]:
    r = app.test_client().post("/api/v1/auth/token",
                               json={"username": who[0], "password": who[1]})
    return {"Authorization": f"Bearer {r.json['token']}"}


def test_over_the_live_cap_429_with_retry_after_and_own_codes(world) -> None:
    app, _, (qa, qb) = world
    codes = [_join(app, q).json["code"] for q in (qa, qb, qa)]
    assert codes == ["A001", "B001", "A002"]
    r = _join(app, qb)
    assert r.status_code == 429 and r.json["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) > 0
    assert "You already hold 3 tickets: A001, B001, A002" in r.json["message"]
    assert "hash" not in r.json and not any(len(w) == 22 for w in r.json["message"].split())
    # The refused join took no number: the next one in B is still B002.
    assert _join(app, qb, headers=_bearer(app)).json["code"] == "B002"


def test_canceling_one_lets_the_client_join_again(world) -> None:
    app, _, (qa, _) = world
    hashes = [_join(app, qa).json["hash"] for _ in range(3)]
    assert _join(app, qa).status_code == 429
    c = app.test_client()
    assert c.post(f"/api/v1/tickets/by-hash/{hashes[1]}/cancel",
                  environ_base=PHONE).status_code == 200
    r = _join(app, qa)
    assert r.status_code == 201 and r.json["code"] == "A004"  # no number lost to the refusals


def test_ended_tickets_leave_the_count(world) -> None:
    app, _, (qa, _) = world
    staff = _bearer(app)
    c = app.test_client()
    desk = c.post("/api/v1/desks", json={"name": "Room 1", "queue_ids": [qa]},
                  headers=_bearer(app, ADMIN)).json
    for _ in range(3):
        assert _join(app, qa).status_code == 201
    called = c.post(f"/api/v1/desks/{desk['id']}/call-next", headers=staff).json
    assert _join(app, qa).status_code == 429  # a CALLED ticket is still live
    c.post(f"/api/v1/tickets/{called['id']}/complete", headers=staff)
    assert _join(app, qa).status_code == 201


def test_the_rate_budget_bounds_join_cancel_cycling(tmp_path: Path) -> None:
    app = _app(tmp_path / "d", join_per_min=5)
    with app.extensions["jonot"].store.write() as tx:
        qa = queues.create_queue(tx, name="General", prefix="A").id
    c = app.test_client()
    for _ in range(5):
        ticket = _join(app, qa).json
        c.post(f"/api/v1/tickets/by-hash/{ticket['hash']}/cancel", environ_base=PHONE)
    r = _join(app, qa)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert "try again in" in r.json["message"]


def test_staff_token_and_registered_kiosk_are_never_refused(world) -> None:
    app, _, (qa, _) = world
    staff = _bearer(app)
    kiosk = app.test_client().post("/api/v1/devices", json={"kind": "kiosk", "name": "Lobby"},
                                   headers=_bearer(app, ADMIN)).json["token"]
    for _ in range(50):
        assert _join(app, qa, headers=staff).status_code == 201
        assert _join(app, qa, headers={"X-Jonot-Device": kiosk}).status_code == 201
    # Neither used up the address's own budget.
    assert _join(app, qa).status_code == 201


def test_an_unregistered_or_non_kiosk_device_is_anonymous(world) -> None:
    app, _, (qa, _) = world
    display = app.test_client().post("/api/v1/devices", json={"kind": "display", "name": "TV"},
                                     headers=_bearer(app, ADMIN)).json["token"]
    for headers in ({"X-Jonot-Device": "not-registered"}, {"X-Jonot-Device": display}, {}):
        _join(app, qa, headers=headers)
    assert _join(app, qa, headers={"X-Jonot-Device": display}).status_code == 429


def test_two_addresses_each_have_their_own_budget(world) -> None:
    app, _, (qa, _) = world
    for addr in ("127.0.0.5", "127.0.0.6"):
        for _ in range(3):
            assert _join(app, qa, {"REMOTE_ADDR": addr}).status_code == 201
    for addr in ("127.0.0.5", "127.0.0.6"):
        assert _join(app, qa, {"REMOTE_ADDR": addr}).status_code == 429


def test_on_the_lan_a_fresh_cookie_does_not_reset_the_budget(world) -> None:
    app, _, (qa, _) = world
    for _ in range(3):
        r = _join(app, qa)
        assert CLIENT_COOKIE not in r.headers.get("Set-Cookie", "")
    fresh = app.test_client()
    fresh.set_cookie(CLIENT_COOKIE, "anything")
    assert _join(app, qa, client=fresh).status_code == 429


def _behind_proxy(tmp_path: Path, **settings: Any) -> tuple[Flask, str]:
    app = _app(tmp_path / "cloud", trusted_proxies=1, **settings)
    with app.extensions["jonot"].store.write() as tx:
        qa = queues.create_queue(tx, name="General", prefix="A").id
    return app, qa


NAT = {"REMOTE_ADDR": "10.0.0.1"}
FORWARDED = {"X-Forwarded-For": "198.51.100.7"}


def test_behind_proxies_phones_on_one_address_each_get_a_cookie_and_a_budget(tmp_path) -> None:
    app, qa = _behind_proxy(tmp_path)
    phones = [app.test_client() for _ in range(3)]
    for phone in phones:
        first = _join(app, qa, NAT, FORWARDED, client=phone)
        assert first.status_code == 201
        cookie = first.headers["Set-Cookie"]
        assert cookie.startswith(f"{CLIENT_COOKIE}=") and "HttpOnly" in cookie
        for _ in range(2):
            r = _join(app, qa, NAT, FORWARDED, client=phone)
            assert r.status_code == 201 and "Set-Cookie" not in r.headers
        assert _join(app, qa, NAT, FORWARDED, client=phone).status_code == 429
    # 9 live tickets on one forwarded address: every phone got its full own budget.


def test_behind_proxies_a_forged_cookie_gets_a_fresh_id(tmp_path) -> None:
    app, qa = _behind_proxy(tmp_path)
    phone = app.test_client()
    for _ in range(3):
        _join(app, qa, NAT, FORWARDED, client=phone)
    assert _join(app, qa, NAT, FORWARDED, client=phone).status_code == 429
    signed = phone.get_cookie(CLIENT_COOKIE).value
    forger = app.test_client()
    forger.set_cookie(CLIENT_COOKIE, signed[:-2] + "xx")
    r = _join(app, qa, NAT, FORWARDED, client=forger)
    assert r.status_code == 201 and forger.get_cookie(CLIENT_COOKIE).value != signed


def test_behind_proxies_cookie_droppers_are_bounded_by_the_address(tmp_path) -> None:
    app, qa = _behind_proxy(tmp_path, join_address_live_max=5)
    for _ in range(5):
        assert _join(app, qa, NAT, FORWARDED, client=app.test_client()).status_code == 201
    r = _join(app, qa, NAT, FORWARDED, client=app.test_client())
    assert r.status_code == 429 and "network address" in r.json["message"]
    assert "A00" not in r.json["message"]  # never other people's codes
    other = {"X-Forwarded-For": "203.0.113.9"}
    assert _join(app, qa, NAT, other, client=app.test_client()).status_code == 201


def test_live_counts_survive_a_restart_and_keys_are_hashed(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    app = _app(data_dir)
    with app.extensions["jonot"].store.write() as tx:
        qa = queues.create_queue(tx, name="General", prefix="A").id
    for _ in range(3):
        assert _join(app, qa).status_code == 201
    app.extensions["jonot"].store.close()

    again = _app(data_dir)
    try:
        r = _join(again, qa)
        assert r.status_code == 429 and "A001, A002, A003" in r.json["message"]
        assert _join(again, qa, {"REMOTE_ADDR": "127.0.0.9"}).status_code == 201
    finally:
        again.extensions["jonot"].store.close()
    conn = sqlite3.connect(data_dir / DB_FILENAME)
    keys = [r[0] for r in conn.execute("SELECT client_key FROM join_keys")]
    counts = sorted(r[0] for r in conn.execute("SELECT live FROM join_key_counts"))
    conn.close()
    assert len(keys) == 4 and not any("127.0.0" in k for k in keys)
    assert counts == [1, 3]


# -- against a real server ---------------------------------------------------------------------

def _post_from(source: str, port: int, path: str,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                      source_address=(source, 0))
    try:
        conn.request("POST", path, body=b"{}",
                     headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@pytest.mark.slow
def test_a_real_server_gives_each_source_address_its_own_budget(tmp_path: Path) -> None:
    data_dir = tmp_path / "live"
    seed_accounts(data_dir)
    server = LiveServer(data_dir).start()
    try:
        admin = token(server.url, ADMIN)
        staff = token(server.url, STAFF)
        qid = setup_office(server.url, admin)["queues"][0]["id"]
        path = f"/api/v1/queues/{qid}/tickets"
        sources = [f"127.0.{i}.{i + 10}" for i in range(1, 5)]
        results: dict[str, list[int]] = {s: [] for s in sources}

        def flood(source: str) -> None:
            for _ in range(6):
                results[source].append(_post_from(source, server.port, path)[0])

        threads = [threading.Thread(target=flood, args=(s,)) for s in sources]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for source in sources:
            assert sorted(results[source]) == [201] * 3 + [429] * 3, (source, results[source])
        status, body = _post_from(sources[0], server.port, path)
        assert status == 429 and "You already hold 3 tickets" in body["message"]
        for _ in range(20):
            assert _post_from(sources[0], server.port, path, staff)[0] == 201
    finally:
        server.stop()
