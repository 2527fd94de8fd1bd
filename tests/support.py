"""Test helpers: a real office server in a subprocess, and small HTTP helpers."""

from __future__ import annotations

import itertools
import os
import re
import signal
import string
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from jonot_local.app import create_app
from jonot_local.domain import users

ADMIN = ("admin", "admin-password")
# For servers that tests flood with anonymous joins from one address.
UNLIMITED_JOINS = {"JONOT_JOIN_LIVE_MAX": "1000000000", "JONOT_JOIN_PER_MIN": "1000000000"}
STAFF = ("staff", "staff-password")
CHEAP_HASH = "pbkdf2:sha256:1000"  # password hashing for tests: fast, not strong


def wait_for_health(url: str, deadline: float) -> None:
    """Poll ``url``'s health until it answers (``RuntimeError`` at the monotonic ``deadline``)."""
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/api/v1/health", timeout=2).ok:
                return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer in time")


class FakeClock:
    """A monotonic clock the test moves: ``clock.now`` or ``clock.advance(s)``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def until(check: Any, what: str, timeout: float = 10.0, poll: float = 0.005) -> None:
    """Poll ``check()`` until it is true; ``AssertionError`` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(poll)


def ticket_rows(db_file: Path) -> list[tuple[Any, ...]]:
    """(id, number, code, hash, state) of every ticket in a database file, by queue and number."""
    import sqlite3

    conn = sqlite3.connect(str(db_file))
    try:
        return conn.execute("SELECT id, number, code, hash, state FROM tickets "
                            "ORDER BY origin_queue_id, number").fetchall()
    finally:
        conn.close()


#: Settings every in-process test app starts from: look-ups by hash are not padded.
# No pause before a refused sign-in (tests of the budgets refuse many); its own test sets it.
TEST_SETTINGS: dict[str, Any] = {"hash_lookup_floor_ms": 0, "password_hash_method": CHEAP_HASH,
                                 "signin_refusal_pause_s": 0}


def build_app(data_dir: Path, **overrides: Any) -> Any:
    """An app on ``data_dir`` with ``TEST_SETTINGS`` and ``overrides``, without accounts.

    The environment is ignored (``JONOT_*`` of the shell never leaks in). Close its
    store when done.
    """
    from jonot_local.settings import Settings

    return create_app(Settings.load({"data_dir": data_dir, **TEST_SETTINGS, **overrides},
                                    environ={}))


class World:
    """One office shared by the tests of a module: admin and staff accounts with bearer
    headers, and fresh queues and desks on demand (prefixes no other test of the world
    uses), so tests share the database without depending on each other."""

    def __init__(self, data_dir: Path, **overrides: Any) -> None:
        self.app = build_app(data_dir, **overrides)
        self.store = self.app.extensions["jonot"].store
        with self.store.write() as tx:
            admin = users.create_user(tx, ADMIN[0], ADMIN[1], role="admin")
            staff = users.create_user(tx, STAFF[0], STAFF[1], role="staff")
            admin_token, _ = users.issue_token(tx, admin["id"], 3600)
            staff_token, _ = users.issue_token(tx, staff["id"], 3600)
        self.admin_id, self.staff_id = admin["id"], staff["id"]
        self.admin = {"Authorization": f"Bearer {admin_token}"}
        self.staff = {"Authorization": f"Bearer {staff_token}"}
        self._prefixes = ("".join(p) for p in itertools.product(string.ascii_uppercase,
                                                                 repeat=3))

    def prefix(self) -> str:
        """A queue prefix not used before in this world."""
        return next(self._prefixes)

    def office(self) -> dict[str, Any]:
        """Fresh queues ``a`` and ``lab``; desk ``room1`` serves a, ``room2`` a then lab."""
        from jonot_local.domain import queues

        p1, p2 = self.prefix(), self.prefix()
        with self.store.write() as tx:
            a = queues.create_queue(tx, name=f"General {p1}", prefix=p1)
            lab = queues.create_queue(tx, name=f"Laboratory {p2}", prefix=p2)
            room1 = queues.create_desk(tx, name=f"Room 1 {p1}", queue_ids=[a.id])
            room2 = queues.create_desk(tx, name=f"Room 2 {p1}", queue_ids=[a.id, lab.id])
        return {"a": a, "lab": lab, "room1": room1, "room2": room2}

    def close(self) -> None:
        self.app.extensions["jonot"].hub.close()
        self.store.close()


def staff_world(data_dir: Path, **overrides: Any) -> World:
    """The former module-world helper, for tests written against it: a ``World`` that
    also answers ``.headers`` (staff) and ``.uid`` (staff id). New tests use
    ``pytest.mark.shared_world`` (see conftest) or ``World``."""
    made = World(data_dir, **{"hash_lookup_per_min": 100_000, **overrides})
    made.headers, made.uid = made.staff, made.staff_id
    return made


class LiveServer:
    """``jonot-local serve`` really started (waitress, real SQLite file) on loopback."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.args = args or []
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.port = 0

    def start(self, timeout: float = 20.0) -> LiveServer:
        cmd = [sys.executable, "-m", "jonot_local", "serve", "--host", "127.0.0.1",
               "--port", str(self.port), "--no-zeroconf", "--data-dir", str(self.data_dir),
               *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=self.env)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.proc.stderr.read()}")
                continue
            m = re.search(r"http://127\.0\.0\.1:(\d+)/api/v1/health", line)
            if m:
                self.port = int(m.group(1))
                self.url = f"http://127.0.0.1:{self.port}"
                break
        else:
            raise RuntimeError("server did not start in time")
        wait_for_health(self.url, deadline)
        return self

    def kill9(self) -> None:
        """Kill the server process abruptly, as a power cut would."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()
        if self.proc:
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream:
                    stream.close()


def seed_accounts(data_dir: Path) -> None:
    """Create the admin and staff accounts of the tests in a data dir."""
    app = create_app({"data_dir": data_dir, "password_hash_method": CHEAP_HASH})
    store = app.extensions["jonot"].store
    with store.write() as tx:
        users.create_user(tx, ADMIN[0], ADMIN[1], role="admin")
        users.create_user(tx, STAFF[0], STAFF[1], role="staff")
    store.close()


def token(base_url: str, who: tuple[str, str] = ADMIN) -> dict[str, str]:
    """Authorization headers for an account of a live server."""
    r = requests.post(base_url + "/api/v1/auth/token",
                      json={"username": who[0], "password": who[1]}, timeout=10)
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['token']}"}


def setup_office(base_url: str, headers: dict[str, str], queues: int = 1,
                 desks: int = 1) -> dict[str, Any]:
    """Create ``queues`` queues (prefixes A, B, …) and ``desks`` desks serving all of them."""
    qs = []
    for i in range(queues):
        r = requests.post(base_url + "/api/v1/queues", headers=headers,
                          json={"name": f"Queue {i}", "prefix": chr(65 + i)}, timeout=10)
        r.raise_for_status()
        qs.append(r.json())
    ds = []
    for i in range(desks):
        r = requests.post(base_url + "/api/v1/desks", headers=headers,
                          json={"name": f"Desk {i}", "queue_ids": [q["id"] for q in qs]},
                          timeout=10)
        r.raise_for_status()
        ds.append(r.json())
    return {"queues": qs, "desks": ds}
