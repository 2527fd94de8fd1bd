"""Printing through the app: kiosk joins print, the API shows printers, a dead printer costs
the kiosk nothing."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from jonot_local.app import create_app
from jonot_local.domain import queues, users
from tests.escpos_standin import EscposStandin, parse
from tests.support import ADMIN, CHEAP_HASH, LiveServer, seed_accounts

BASE = "http://192.0.2.5:8080"  # a LAN address, as a kiosk would use


def make_app(data_dir: Path, printer: str = "", **more: Any) -> Flask:
    app = create_app({"data_dir": data_dir, "hash_lookup_floor_ms": 0,
                      "password_hash_method": CHEAP_HASH, "printer": printer,
                      "printer_timeout_s": 0.5, "printer_attempts": 1, **more})
    rt = app.extensions["jonot"]
    with rt.store.write() as tx:
        users.create_user(tx, ADMIN[0], ADMIN[1], role="admin")
        queues.create_queue(tx, name="Yleislääkäri", prefix="A")
    rt.printing.start()
    return app


@pytest.fixture
def printer() -> Iterator[EscposStandin]:
    standin = EscposStandin()
    yield standin
    standin.close()


@pytest.fixture
def world(tmp_path: Path, printer: EscposStandin) -> Iterator[Any]:
    app = make_app(tmp_path / "data", printer.uri)
    client = app.test_client()
    r = client.post("/api/v1/auth/token", json={"username": ADMIN[0], "password": ADMIN[1]})
    admin = {"Authorization": f"Bearer {r.json['token']}"}
    queue_id = client.get("/api/v1/queues").json["items"][0]["id"]
    yield app, client, admin, queue_id
    app.extensions["jonot"].printing.stop()
    app.extensions["jonot"].store.close()


def join(client: FlaskClient, queue_id: str, source: str = "kiosk",
         headers: dict[str, str] | None = None) -> Any:
    r = client.post(f"/api/v1/queues/{queue_id}/tickets", json={"source": source},
                    base_url=BASE, headers=headers or {})
    assert r.status_code == 201, r.json
    return r.json


def test_a_kiosk_ticket_prints_with_its_code_and_qr(world: Any, printer: EscposStandin) -> None:
    app, client, admin, queue_id = world
    ticket = join(client, queue_id)
    parsed = parse(printer.wait_for(1)[0])
    assert parsed.big == [ticket["code"]]
    assert parsed.qr_payloads == [ticket["url"]] and ticket["url"].startswith(BASE + "/t/")
    assert parsed.cuts == 1
    assert "Yleislääkäri" in parsed.text and "You are next" in parsed.text


def test_only_kiosk_tickets_print(world: Any, printer: EscposStandin) -> None:
    app, client, admin, queue_id = world
    join(client, queue_id, source="remote")
    join(client, queue_id, source="desk", headers=admin)
    kiosk = join(client, queue_id)
    assert parse(printer.wait_for(1)[0]).big == [kiosk["code"]]
    time.sleep(0.2)
    assert len(printer.receipts) == 1


def test_a_kiosk_with_its_own_printer(world: Any, printer: EscposStandin) -> None:
    app, client, admin, queue_id = world
    own = EscposStandin()
    try:
        r = client.post("/api/v1/devices", json={"kind": "kiosk", "name": "Door 2"},
                        headers=admin)
        kiosk_id, token = r.json["id"], r.json["token"]
        assert r.json["printer"] is None
        r = client.patch(f"/api/v1/devices/{kiosk_id}", json={"printer": own.uri},
                         headers=admin)
        assert r.status_code == 200 and r.json["printer"] == own.uri
        ticket = join(client, queue_id, headers={"X-Jonot-Device": token})
        assert parse(own.wait_for(1)[0]).big == [ticket["code"]]
        other = join(client, queue_id)  # a kiosk without its own: the default printer
        assert parse(printer.wait_for(1)[0]).big == [other["code"]]
        listed = client.get("/api/v1/printers", headers=admin).json
        assert [p["uri"] for p in listed["items"]] == [printer.uri, own.uri]
        r = client.patch(f"/api/v1/devices/{kiosk_id}", json={"printer": None}, headers=admin)
        assert r.json["printer"] is None
    finally:
        own.close()


@pytest.mark.parametrize("body, field", [
    ({"printer": "lpt1"}, "printer"), ({"printer": 5}, "printer"), ({}, "printer")])
def test_device_printer_is_checked(world: Any, body: dict[str, Any], field: str) -> None:
    app, client, admin, _ = world
    kiosk = client.post("/api/v1/devices", json={"kind": "kiosk", "name": "K"},
                        headers=admin).json
    r = client.patch(f"/api/v1/devices/{kiosk['id']}", json=body, headers=admin)
    assert r.status_code == 422 and r.json["errors"][0]["field"] == field


def test_only_kiosks_get_printers_and_only_admins_set_them(world: Any) -> None:
    app, client, admin, _ = world
    display = client.post("/api/v1/devices", json={"kind": "display", "name": "TV"},
                          headers=admin).json
    r = client.patch(f"/api/v1/devices/{display['id']}", json={"printer": "tcp://h"},
                     headers=admin)
    assert r.status_code == 422 and "kiosk" in r.json["errors"][0]["message"]
    assert client.patch(f"/api/v1/devices/{display['id']}",
                        json={"printer": None}).status_code == 401
    assert client.get("/api/v1/printers").status_code == 401
    assert client.post("/api/v1/printers/test").status_code == 401
    r = client.patch("/api/v1/devices/nope", json={"printer": None}, headers=admin)
    assert r.status_code == 404


def test_printer_state_in_the_api_and_health(world: Any, printer: EscposStandin) -> None:
    app, client, admin, queue_id = world
    assert client.get("/api/v1/health").json["printer"] == {
        "state": "unknown", "printers": 1, "queue": 0, "running": True}
    join(client, queue_id)
    printer.wait_for(1)
    printing = app.extensions["jonot"].printing
    deadline = time.monotonic() + 5
    while printing.state_of(printer.uri)["printed"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.get("/api/v1/health").json["printer"]["state"] == "ok"
    printer.refuse()
    join(client, queue_id)
    while printing.state_of(printer.uri)["failed"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    listed = client.get("/api/v1/printers", headers=admin).json
    assert listed["default"] == printer.uri and listed["running"] is True
    state = listed["items"][0]
    assert state["state"] == "failing" and state["last_error_kind"] == "refused"
    assert state["last_ok_at"] and state["printed"] == 1 and state["failed"] == 1
    assert client.get("/api/v1/health").json["printer"]["state"] == "failing"


def test_test_print_button(world: Any, printer: EscposStandin) -> None:
    app, client, admin, _ = world
    r = client.post("/api/v1/printers/test", headers=admin)
    assert r.status_code == 200 and r.json["printed"] is True, r.json
    assert "Test print" in parse(printer.wait_for(1)[0]).text
    printer.refuse()
    r = client.post("/api/v1/printers/test", json={"printer": printer.uri}, headers=admin)
    assert r.json["printed"] is False and "refused" in r.json["error"]
    r = client.post("/api/v1/printers/test", json={"printer": "nonsense"}, headers=admin)
    assert r.status_code == 422


def _join_times(client: FlaskClient, queue_id: str, headers: dict[str, str],
                count: int = 25) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        r = client.post(f"/api/v1/queues/{queue_id}/tickets", json={"source": "kiosk"},
                        base_url=BASE, headers=headers)
        times.append(time.perf_counter() - started)
        assert r.status_code == 201
    return times


@pytest.mark.parametrize("failure", ["refused", "hang"])
def test_a_dead_or_hung_printer_does_not_slow_the_kiosk(
        tmp_path: Path, failure: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "jonot_local.printing")
    standin = EscposStandin()
    if failure == "refused":
        standin.refuse()
    else:
        standin.mode = "hang"
    medians = {}
    try:
        for label, uri in (("none", ""), (failure, standin.uri)):
            app = make_app(tmp_path / label, uri, printer_queue=8, printer_timeout_s=2.0)
            client = app.test_client()
            token = client.post("/api/v1/auth/token", json={
                "username": ADMIN[0], "password": ADMIN[1]}).json["token"]
            queue_id = client.get("/api/v1/queues").json["items"][0]["id"]
            times = _join_times(client, queue_id, {"Authorization": f"Bearer {token}"})
            medians[label] = statistics.median(times)
            assert max(times) < 2.0  # no join ever waits out the printer's 2 s timeout
            app.extensions["jonot"].printing.stop(timeout=2)
            app.extensions["jonot"].store.close()
    finally:
        standin.close()
    print(f"join median ms: { {k: round(v * 1000, 2) for k, v in medians.items()} }")
    assert medians[failure] < medians["none"] * 2 + 0.01, medians
    outages = [r for r in caplog.records if "not printing" in r.getMessage()]
    assert len(outages) == 1  # once, for 25 tickets


@pytest.mark.slow
def test_a_served_kiosk_prints_and_survives_its_printer(tmp_path: Path) -> None:
    """A real ``serve --printer``: join to bytes at the printer, then the printer goes off."""
    standin = EscposStandin()
    data_dir = tmp_path / "live"
    seed_accounts(data_dir)
    server = LiveServer(data_dir, env={"JONOT_PRINTER_TIMEOUT_S": "0.5",
                                                 "JONOT_PRINTER_ATTEMPTS": "1"},
                        args=["--printer", standin.uri]).start()
    try:
        s = requests.Session()
        token = s.post(server.url + "/api/v1/auth/token", json={
            "username": ADMIN[0], "password": ADMIN[1]}).json()["token"]
        s.headers["Authorization"] = f"Bearer {token}"
        queue_id = s.post(server.url + "/api/v1/queues",
                          json={"name": "General", "prefix": "A"}).json()["id"]
        lags = []
        for n in range(3):
            started = time.monotonic()
            r = s.post(f"{server.url}/api/v1/queues/{queue_id}/tickets",
                       json={"source": "kiosk"})
            assert r.status_code == 201
            standin.wait_for(n + 1)
            lags.append(standin.cut_times[n] - started)
            parsed = parse(standin.receipts[n])
            assert parsed.big == [r.json()["code"]] and parsed.qr_payloads == [r.json()["url"]]
        assert max(lags) < 1.0, lags
        standin.refuse()
        for _ in range(3):
            started = time.monotonic()
            r = s.post(f"{server.url}/api/v1/queues/{queue_id}/tickets",
                       json={"source": "kiosk"})
            assert r.status_code == 201 and time.monotonic() - started < 0.4
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            state = s.get(server.url + "/api/v1/printers").json()["items"][0]
            if state["failed"] >= 3:
                break
            time.sleep(0.1)
        assert state["state"] == "failing" and state["printed"] == 3
        print(f"join to cut at the printer: {[round(x * 1000, 1) for x in lags]} ms")
        assert server.proc is not None
        server.proc.terminate()
        _, err = server.proc.communicate(timeout=10)
        assert err.count("is not printing") == 1, err  # once for the outage, not per ticket
    finally:
        server.stop()
        standin.close()
