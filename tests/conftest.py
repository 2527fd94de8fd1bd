"""Shared fixtures, defined once here: an app, its client and store, accounts, an office,
live servers.

Two worlds, chosen per module:

- by default every test gets a fresh app on its own temp data dir (``app``,
  ``client``, ``store``, ``admin_headers``, ``staff_headers``, ``office`` with
  queues ``A`` and ``L``);
- a module marked ``pytestmark = pytest.mark.shared_world(**settings)`` shares
  one app per module (``world``, a ``support.World``; accounts cost a password
  hash each), and the same fixtures then come from it, ``office`` being fresh
  queues and desks with prefixes no other test of the module uses.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from jonot_local.domain import queues, users

from .support import ADMIN, STAFF, UNLIMITED_JOINS, LiveServer, World, build_app, seed_accounts


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "shared_world(**settings): the module's tests share one app (see conftest)")


@pytest.fixture(autouse=True)
def _scrub_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No JONOT_* variable of the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("JONOT_"):
            monkeypatch.delenv(key)


def _shared(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("shared_world") is not None


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The module's shared office, with the settings of its ``shared_world`` mark."""
    marker = request.node.get_closest_marker("shared_world")
    settings = marker.kwargs if marker else {}
    made = World(tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2]) / "data",
                 **settings)
    yield made
    made.close()


@pytest.fixture
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """The module's shared app, or a fresh one with the admin and staff accounts."""
    if _shared(request):
        yield request.getfixturevalue("world").app
        return
    application = build_app(tmp_path / "data")
    rt = application.extensions["jonot"]
    with rt.store.write() as tx:
        users.create_user(tx, ADMIN[0], ADMIN[1], role="admin")
        users.create_user(tx, STAFF[0], STAFF[1], role="staff")
    yield application
    rt.hub.close()
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
def admin_headers(request: pytest.FixtureRequest, client: FlaskClient) -> dict[str, str]:
    if _shared(request):
        return dict(request.getfixturevalue("world").admin)
    return _headers(client, ADMIN)


@pytest.fixture
def staff_headers(request: pytest.FixtureRequest, client: FlaskClient) -> dict[str, str]:
    if _shared(request):
        return dict(request.getfixturevalue("world").staff)
    return _headers(client, STAFF)


@pytest.fixture
def office(request: pytest.FixtureRequest, store: Any) -> dict[str, Any]:
    """Queues ``a`` (General) and ``lab`` (Laboratory); desk ``room1`` serves a and
    ``room2`` a then lab. Fresh app: prefixes A and L; shared world: unused prefixes."""
    if _shared(request):
        return request.getfixturevalue("world").office()
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
    server = LiveServer(data_dir, env=UNLIMITED_JOINS).start()
    yield server
    server.stop()
