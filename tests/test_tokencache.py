"""Remembered bearer tokens: changes made here count at once, others within the limit."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from jonot_local import tokencache
from jonot_local.db import DB_FILENAME
from jonot_local.domain import users
from jonot_local.tokencache import TokenCache

from .support import ADMIN, STAFF, FakeClock

ME = "/api/v1/auth/me"


def _token(client: Any, who: tuple[str, str] = STAFF) -> str:
    r = client.post("/api/v1/auth/token", json={"username": who[0], "password": who[1]})
    assert r.status_code == 201, r.json
    return str(r.json["token"])


def _me(client: Any, token: str) -> Any:
    return client.get(ME, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def clock(app: Any) -> FakeClock:
    """The app's token cache on a clock the test moves."""
    rt = app.extensions["jonot"]
    fake = FakeClock()
    rt.tokens = TokenCache(rt.store, 5.0, clock=fake)
    return fake


def _outside(app: Any, sql: str, params: tuple[Any, ...] = ()) -> None:
    """A change by another process (the command line), on a connection of its own."""
    path = app.extensions["jonot"].store.path
    assert path.name == DB_FILENAME
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(sql, params)
    finally:
        conn.close()


def test_a_token_is_looked_up_once_then_remembered(app: Any, client: Any, clock: FakeClock) -> None:
    token = _token(client)
    assert _me(client, token).status_code == 200
    cache = app.extensions["jonot"].tokens
    assert len(cache) == 1
    # Gone from the database behind this process's back: still known for a while…
    _outside(app, "DELETE FROM api_tokens")
    clock.now += 4.9
    assert _me(client, token).status_code == 200
    # …and refused once the cache's limit has passed.
    clock.now += 0.2
    assert _me(client, token).status_code == 401


@pytest.mark.parametrize("change", ["deactivate", "password", "role", "outside_then_here"])
def test_a_change_made_here_counts_at_once(app: Any, client: Any, clock: FakeClock,
                                           change: str) -> None:
    staff_token = _token(client)
    assert _me(client, staff_token).status_code == 200
    store = app.extensions["jonot"].store
    with store.read() as tx:
        staff = next(u for u in users.list_users(tx) if u["username"] == STAFF[0])
    if change == "deactivate":
        with store.write() as tx:
            users.set_active(tx, staff["id"], False)
        assert _me(client, staff_token).status_code == 401
    elif change == "password":
        with store.write() as tx:
            users.set_password_of(tx, staff["id"], "another-password-1")
        assert _me(client, staff_token).status_code == 401
    elif change == "role":
        with store.write() as tx:
            users.set_role(tx, staff["id"], "admin")
        r = _me(client, staff_token)
        assert r.status_code == 200 and r.json["role"] == "admin"
    else:
        # A row changed elsewhere is seen once this process touches accounts itself.
        _outside(app, "UPDATE users SET display_name = 'Renamed' WHERE id = ?", (staff["id"],))
        assert _me(client, staff_token).json["display_name"] != "Renamed"
        _token(client, ADMIN)  # signing in writes a token here
        assert _me(client, staff_token).json["display_name"] == "Renamed"


def test_signing_out_of_the_desk_counts_at_once(app: Any, client: Any, clock: FakeClock) -> None:
    token = _token(client)
    assert _me(client, token).status_code == 200
    with app.extensions["jonot"].store.write() as tx:
        users.revoke_token(tx, token)
    assert _me(client, token).status_code == 401


def test_an_expired_token_is_refused_though_remembered(app: Any, client: Any, clock: FakeClock,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    token = _token(client)
    assert _me(client, token).status_code == 200
    later = "9999-01-01T00:00:00.000000Z"
    monkeypatch.setattr(tokencache, "utcnow_iso", lambda: later)
    monkeypatch.setattr(users, "utcnow_iso", lambda: later)
    assert _me(client, token).status_code == 401


def test_unknown_tokens_are_not_remembered(app: Any, client: Any, clock: FakeClock) -> None:
    for n in range(20):
        assert _me(client, f"not-a-token-{n}").status_code == 401
    assert len(app.extensions["jonot"].tokens) == 0


def test_the_cache_is_bounded(app: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokencache, "MAX_ENTRIES", 3)
    rt = app.extensions["jonot"]
    tokens = []
    with rt.store.write() as tx:
        staff = next(u for u in users.list_users(tx) if u["username"] == STAFF[0])
        for _ in range(5):
            tokens.append(users.issue_token(tx, staff["id"], 3600)[0])
    for token in tokens:
        assert rt.tokens.account(token)["username"] == STAFF[0]
    assert len(rt.tokens) == 3


def test_zero_seconds_turns_the_cache_off(app: Any, client: Any) -> None:
    rt = app.extensions["jonot"]
    rt.tokens = TokenCache(rt.store, 0.0)
    token = _token(client)
    assert _me(client, token).status_code == 200
    _outside(app, "DELETE FROM api_tokens")
    assert _me(client, token).status_code == 401
    assert len(rt.tokens) == 0
