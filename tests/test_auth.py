"""Bearer tokens, roles and what anonymous callers (kiosk, phone) may not do."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jonot_local.api.openapi import build_document
from jonot_local.domain import users
from jonot_local.timeutil import parse_iso, utcnow

from .support import ADMIN, STAFF

DOC = build_document()
METHODS = ("get", "post", "put", "patch", "delete")


def ops_for(*roles: str) -> list[tuple[str, str]]:
    return [(method, path) for path, item in DOC["paths"].items()
            for method, op in item.items()
            if method in METHODS and op["x-jonot-role"] in roles]


def fill(path: str) -> str:
    # Ids need not exist: authentication comes before any look-up.
    return re.sub(r"\{[^}]+\}", "01ANYTHING0000000000000000", path)


def token_for(client: Any, who: tuple[str, str]) -> str:
    r = client.post("/api/v1/auth/token", json={"username": who[0], "password": who[1]})
    assert r.status_code == 201, r.json
    return r.json["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- tokens ---------------------------------------------------------------------------------

def test_a_token_is_issued_for_the_right_password(client, app):
    r = client.post("/api/v1/auth/token", json={"username": STAFF[0], "password": STAFF[1]})
    assert r.status_code == 201
    body = r.json
    assert body["token_type"] == "Bearer" and len(body["token"]) >= 40
    ttl = app.extensions["jonot"].settings.token_ttl_s
    left = (parse_iso(body["expires_at"]) - utcnow()).total_seconds()
    assert ttl - 60 < left <= ttl
    assert body["user"]["username"] == STAFF[0] and body["user"]["role"] == "staff"
    assert "password_hash" not in body["user"]
    me = client.get("/api/v1/auth/me", headers=bearer(body["token"]))
    assert me.status_code == 200 and me.json["username"] == STAFF[0]


def test_wrong_password_and_unknown_user_get_the_same_401(client):
    wrong = client.post("/api/v1/auth/token", json={"username": ADMIN[0], "password": "nope-nope"})
    unknown = client.post("/api/v1/auth/token", json={"username": "ghost", "password": "x" * 9})
    for r in (wrong, unknown):
        assert r.status_code == 401 and r.mimetype == "application/problem+json"
        assert r.json["code"] == "unauthorized"
        assert "WWW-Authenticate" in r.headers
        assert "token" not in r.json
    assert wrong.json["message"] == unknown.json["message"]
    assert wrong.get_data() == unknown.get_data()


def test_missing_credentials_are_a_validation_error(client):
    r = client.post("/api/v1/auth/token", json={"username": ADMIN[0]})
    assert r.status_code == 422
    assert r.json["errors"] == [{"field": "password", "message": "is required"}]


def test_an_inactive_account_cannot_sign_in_and_its_tokens_stop_working(client, store):
    token = token_for(client, STAFF)
    with store.write() as tx:
        tx.execute("UPDATE users SET active = 0 WHERE username = ?", (STAFF[0],))
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401
    r = client.post("/api/v1/auth/token", json={"username": STAFF[0], "password": STAFF[1]})
    assert r.status_code == 401


# -- 401 and 403 -----------------------------------------------------------------------------

def test_every_staff_and_admin_endpoint_needs_a_token(client):
    protected = ops_for("staff", "admin")
    assert len(protected) >= 15
    for method, path in protected:
        r = client.open(fill(path), method=method.upper(), json={})
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.json["code"] == "unauthorized"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_malformed_or_unknown_tokens_are_refused(client):
    for header in ("Basic YWRtaW46YWRtaW4tcGFzc3dvcmQ=", "Bearer", "Bearer    ", "Token abc",
                   "Bearer not-a-real-token", "bearer x y"):
        r = client.get("/api/v1/tickets", headers={"Authorization": header})
        assert r.status_code == 401, header
        assert r.mimetype == "application/problem+json"
        assert "WWW-Authenticate" in r.headers


def test_a_bad_token_is_refused_even_where_none_is_needed(client, office):
    """A wrong credential is an error, not silently anonymous."""
    r = client.post(f"/api/v1/queues/{office['a'].id}/tickets", json={},
                    headers=bearer("forged-token"))
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


def test_the_scheme_name_is_case_insensitive(client):
    token = token_for(client, STAFF)
    r = client.get("/api/v1/tickets", headers={"Authorization": f"bearer {token}"})
    assert r.status_code == 200


def test_a_staff_token_is_forbidden_on_every_admin_endpoint(client, staff_headers):
    admin_ops = ops_for("admin")
    assert {p for _, p in admin_ops} >= {"/api/v1/queues", "/api/v1/desks", "/api/v1/displays"}
    for method, path in admin_ops:
        r = client.open(fill(path), method=method.upper(), json={}, headers=staff_headers)
        assert r.status_code == 403, (method, path, r.status_code)
        assert r.json["code"] == "forbidden"


def test_a_staff_token_works_on_staff_endpoints(client, staff_headers, office):
    r = client.post(f"/api/v1/queues/{office['a'].id}/tickets", json={"name": "Aino"},
                    headers=staff_headers)
    assert r.status_code == 201 and r.json["source"] == "desk"
    for method, path in ops_for("staff"):
        if "{" in path:
            continue
        r = client.open(path, method=method.upper(), headers=staff_headers)
        assert r.status_code == 200, (method, path)
    r = client.post(f"/api/v1/desks/{office['room1'].id}/call-next", headers=staff_headers)
    assert r.status_code == 200 and r.json["code"] == "A001"


def test_an_expired_token_is_refused(client, store):
    token = token_for(client, ADMIN)
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
    with store.write() as tx:
        tx.execute("UPDATE api_tokens SET expires_at = '2000-01-01T00:00:00.000000Z'")
    r = client.get("/api/v1/auth/me", headers=bearer(token))
    assert r.status_code == 401 and r.json["code"] == "unauthorized"
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


def test_changing_the_password_revokes_the_tokens(client, store):
    old = token_for(client, STAFF)
    other = token_for(client, ADMIN)
    with store.write() as tx:
        users.set_password(tx, STAFF[0], "a-new-password")
    assert client.get("/api/v1/auth/me", headers=bearer(old)).status_code == 401
    assert client.get("/api/v1/auth/me", headers=bearer(other)).status_code == 200
    r = client.post("/api/v1/auth/token", json={"username": STAFF[0], "password": STAFF[1]})
    assert r.status_code == 401
    fresh = token_for(client, (STAFF[0], "a-new-password"))
    assert client.get("/api/v1/auth/me", headers=bearer(fresh)).status_code == 200


def test_tokens_and_passwords_are_not_stored_in_clear(client, app, store):
    token = token_for(client, ADMIN)
    with store.read() as tx:
        rows = [dict(r) for r in tx.all("SELECT * FROM users")]
        tokens = [dict(r) for r in tx.all("SELECT * FROM api_tokens")]
    assert tokens and all(token not in str(t) for t in tokens)
    for row in rows:
        assert ADMIN[1] not in str(row) and STAFF[1] not in str(row)
        assert row["password_hash"].startswith(("scrypt:", "pbkdf2:"))
    data_dir = Path(app.extensions["jonot"].settings.data_dir)
    raw = b"".join(p.read_bytes() for p in data_dir.glob("jonot.sqlite3*"))
    for secret in (token, ADMIN[1], STAFF[1]):
        assert secret.encode() not in raw, secret


# -- anonymous callers: kiosk and phone ----------------------------------------------------------

def test_anonymous_join_cannot_set_priority_notes_or_staff_sources(client, office):
    url = f"/api/v1/queues/{office['a'].id}/tickets"
    for body in ({"priority": "priority"}, {"priority": True}, {"source": "desk"},
                 {"source": "appointment"}, {"notes": "let her in first"}):
        r = client.post(url, json=body)
        assert r.status_code == 403, body
        assert r.json["code"] == "forbidden"
    for i, body in enumerate(({}, {"source": "kiosk"}, {"source": "remote"},
                              {"priority": "normal"}, {"priority": False})):
        r = client.post(url, json=body, environ_base={"REMOTE_ADDR": f"127.0.0.{i + 10}"})
        assert r.status_code == 201, body
        assert r.json["priority"] == "normal"
    r = client.post(url, json={"source": "desk", "priority": "priority", "notes": "ok"},
                    headers=bearer(token_for(client, STAFF)))
    assert r.status_code == 201 and r.json["priority"] == "priority"
    assert r.json["source"] == "desk" and r.json["notes"] == "ok"


def test_a_kiosk_cannot_reach_desk_functions(client, office):
    r = client.post(f"/api/v1/queues/{office['a'].id}/tickets", json={"source": "kiosk"})
    ticket = r.json
    desk = office["room1"].id
    attempts = [
        ("POST", f"/api/v1/desks/{desk}/call-next", None),
        ("POST", f"/api/v1/tickets/{ticket['id']}/call", {"desk_id": desk}),
        ("POST", f"/api/v1/tickets/{ticket['id']}/cancel", None),
        ("PATCH", f"/api/v1/tickets/{ticket['id']}", {"version": 1, "priority": "priority"}),
        ("GET", f"/api/v1/tickets/{ticket['id']}", None),
        ("GET", "/api/v1/tickets", None),
        ("GET", "/api/v1/desks", None),
    ]
    for method, path, body in attempts:
        for headers in ({}, bearer(ticket["hash"])):  # the hash is no staff credential
            r = client.open(path, method=method, json=body, headers=headers)
            assert r.status_code == 401, (method, path, headers)
    r = client.get(f"/api/v1/tickets/by-hash/{ticket['hash']}")
    assert r.json["state"] == "WAITING" and r.json["priority"] == "normal"


def test_anonymous_callers_do_not_get_personal_fields_back(client, office):
    r = client.post(f"/api/v1/queues/{office['a'].id}/tickets",
                    json={"name": "Maija", "phone": "+358 40 123", "extra": [
                        {"title": "Reason", "value": "blood test"}]})
    assert r.status_code == 201
    for field in ("name", "phone", "notes", "extra", "called_by"):
        assert field not in r.json
    r = client.get(f"/api/v1/tickets/by-hash/{r.json['hash']}")
    for field in ("name", "phone", "notes", "extra", "called_by"):
        assert field not in r.json


def test_public_endpoints_need_no_token(client):
    public = ops_for("anyone", "holder")
    assert ("post", "/api/v1/queues/{queue_id}/tickets") in public
    for method, path in public:
        url = fill(path.replace("{hash}", "A" * 22))
        if url.endswith("/api/v1/events"):
            url += "?display=01NOSUCHDISPLAY"  # a refusal: an open stream would never end
        r = client.open(url, method=method.upper(), json={} if method != "get" else None)
        assert r.status_code not in (401, 403), (method, path, r.status_code)
        assert r.status_code < 500
