"""Shared fixtures: an app on a temp data dir, a test client, accounts, live servers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from jonot_local.app import create_app
from jonot_local.domain import queues, users

from .support import ADMIN, CHEAP_HASH, STAFF, LiveServer, seed_accounts


@pytest.fixture(autouse=True)
def _scrub_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No JONOT_* variable of the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("JONOT_"):
            monkeypatch.delenv(key)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    application = create_app({"data_dir": tmp_path / "data", "hash_lookup_floor_ms": 0,
                              "password_hash_method": CHEAP_HASH})
    rt = application.extensions["jonot"]
    with rt.store.write() as tx:
        users.create_user(tx, ADMIN[0], ADMIN[1], role="admin")
        users.create_user(tx, STAFF[0], STAFF[1], role="staff")
    yield application
    rt.store.close()


@pytest.fixture
def store(app: Flask) -> Any:
    return app.extensions["jonot"].store


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _headers(client: FlaskClient, who: tuple[str, str]) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"username": who[0], "password": who[1]})
    assert r.status_code == 201, r.json
    return {"Authorization": f"Bearer {r.json['token']}"}


@pytest.fixture
def admin_headers(client: FlaskClient) -> dict[str, str]:
    return _headers(client, ADMIN)


@pytest.fixture
def staff_headers(client: FlaskClient) -> dict[str, str]:
    return _headers(client, STAFF)


@pytest.fixture
def office(store: Any) -> dict[str, Any]:
    """Two queues (A: General, L: Laboratory) and two desks: Room 1 (A) and Room 2 (A, L)."""
    with store.write() as tx:
        a = queues.create_queue(tx, name="General", prefix="A")
        lab = queues.create_queue(tx, name="Laboratory", prefix="L")
        room1 = queues.create_desk(tx, name="Room 1", queue_ids=[a.id])
        room2 = queues.create_desk(tx, name="Room 2", queue_ids=[a.id, lab.id])
    return {"a": a, "lab": lab, "room1": room1, "room2": room2}


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A real ``jonot-local serve`` on loopback with the admin/staff accounts."""
    data_dir = tmp_path / "live"
    seed_accounts(data_dir)
    server = LiveServer(data_dir).start()
    yield server
    server.stop()
