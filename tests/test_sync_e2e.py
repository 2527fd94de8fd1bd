"""An office and a cloud as real processes on loopback, syncing for real.

``jonot-local serve`` (with ``JONOT_CLOUD_URL``/``JONOT_CLOUD_TOKEN``) and
``jonot-local cloud serve`` (the office registered with ``cloud office add
--json``): local joins, calls and completions appear on the cloud; a remote join
through the cloud gets the office's number; a remote cancel is applied; the
cloud stopped for a while does not slow the office and the backlog drains when
it returns; a wrong token is refused and health says so in words. Also the
steady-state lag from a local change to the cloud answering it (p50/p95).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .cloud_support import CloudProcess, free_port
from .support import STAFF, LiveServer, seed_accounts, setup_office, token
from .test_cloud import pg_url  # noqa: F401 - the PostgreSQL fixture

pytestmark = pytest.mark.slow

CLOUD_ENV = {"JONOT_HASH_MISS_PER_MIN": "100000", "JONOT_HASH_LOOKUP_PER_MIN": "100000",
             "JONOT_HASH_LOOKUP_FLOOR_MS": "0"}


def office_env(cloud_url: str, cloud_token: str) -> dict[str, str]:
    return {"JONOT_CLOUD_URL": cloud_url, "JONOT_CLOUD_TOKEN": cloud_token,
            "JONOT_SYNC_HEARTBEAT_S": "1", "JONOT_BACKUP_INTERVAL_S": "0",
            "JONOT_HASH_LOOKUP_FLOOR_MS": "0"}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 8.0,
             every: float = 0.02) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except requests.RequestException as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def add_office(data_dir: Path, database_url: str, name: str = "Clinic") -> dict[str, str]:
    cmd = [sys.executable, "-m", "jonot_local", "cloud", "office", "add", name, "--json",
           "--data-dir", str(data_dir)]
    if database_url:
        cmd += ["--database-url", database_url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def cloud_view(cloud: CloudProcess, ticket_hash: str) -> dict[str, Any] | None:
    r = requests.get(f"{cloud.url}/api/v1/tickets/by-hash/{ticket_hash}", timeout=5)
    return r.json() if r.status_code == 200 else None


def hash_of(ticket: dict[str, Any]) -> str:
    return ticket["url"].rsplit("/t/", 1)[1]


class Pair:
    def __init__(self, tmp: Path, database_url: str) -> None:
        self.tmp, self.database_url = tmp, database_url
        self.cloud = CloudProcess(tmp / "cloud", database_url, env=CLOUD_ENV,
                                  port=free_port()).start()
        self.creds = add_office(tmp / "cloud", database_url)
        data = tmp / "office"
        seed_accounts(data)
        self.office = LiveServer(data, env=office_env(self.cloud.url,
                                                      self.creds["token"])).start()
        self.admin = token(self.office.url)
        self.staff = token(self.office.url, STAFF)
        setup = setup_office(self.office.url, self.admin, queues=1, desks=1)
        self.queue_id = setup["queues"][0]["id"]
        self.desk_id = setup["desks"][0]["id"]

    def join(self) -> dict[str, Any]:
        r = requests.post(f"{self.office.url}/api/v1/queues/{self.queue_id}/tickets", json={},
                          headers=self.staff, timeout=10)
        r.raise_for_status()
        return r.json()

    def call_next(self) -> requests.Response:
        return requests.post(f"{self.office.url}/api/v1/desks/{self.desk_id}/call-next",
                             headers=self.staff, timeout=10)

    def complete(self, ticket_id: str) -> requests.Response:
        return requests.post(f"{self.office.url}/api/v1/tickets/{ticket_id}/complete",
                             headers=self.staff, timeout=10)

    def restart_cloud(self) -> None:
        self.cloud = CloudProcess(self.tmp / "cloud", self.database_url, env=CLOUD_ENV,
                                  port=self.cloud.port).start()

    def health(self) -> dict[str, Any]:
        return requests.get(self.office.url + "/api/v1/health", timeout=5).json()["sync"]

    def stop(self) -> None:
        self.office.stop()
        self.cloud.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def pair(request, tmp_path) -> Iterator[Pair]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    p = Pair(tmp_path, url)
    try:
        yield p
    finally:
        p.stop()


def state_on_cloud(pair: Pair, ticket_hash: str, state: str) -> Callable[[], Any]:
    def check() -> Any:
        view = cloud_view(pair.cloud, ticket_hash)
        return view if view and view["state"] == state else None
    return check


def test_office_and_cloud_processes_sync_both_ways(pair):
    # Local joins, a call and a completion appear on the cloud with their codes.
    first, second = pair.join(), pair.join()
    view = wait_for("a local join on the cloud",
                    state_on_cloud(pair, hash_of(first), "WAITING"))
    assert view["code"] == first["code"] and view["number"] == first["number"]
    assert pair.call_next().json()["id"] == first["id"]
    view = wait_for("the call on the cloud", state_on_cloud(pair, hash_of(first), "CALLED"))
    assert view["desk_name"] == "Desk 0"
    assert wait_for("the next one's position", lambda: (
        (cloud_view(pair.cloud, hash_of(second)) or {}).get("position") == 1))
    assert pair.complete(first["id"]).status_code == 200
    wait_for("the completion on the cloud", state_on_cloud(pair, hash_of(first), "COMPLETED"))
    page = requests.get(f"{pair.cloud.url}/t/{hash_of(first)}", timeout=5)
    assert page.status_code == 200 and first["code"] in page.text
    # The patient's link: the LAN page, and the same path on the cloud for mobile data.
    assert first["cloud_url"] == f"{pair.cloud.url}/t/{hash_of(first)}"
    lan_page = requests.get(first["url"], timeout=5).text
    assert f'href="{first["cloud_url"]}"' in lan_page
    assert requests.get(first["cloud_url"], timeout=5).status_code == 200

    # A remote join: 202 PENDING at once, then the office's number, code and position.
    r = requests.post(f"{pair.cloud.url}/api/v1/queues/{pair.queue_id}/tickets", json={},
                      timeout=5)
    assert r.status_code == 202, r.text
    remote = r.json()
    assert remote["state"] == "PENDING" and remote["number"] is None
    view = wait_for("the remote join numbered by the office",
                    state_on_cloud(pair, remote["hash"], "WAITING"))
    assert view["number"] == second["number"] + 1
    assert view["position"] == 2  # behind the second local ticket
    local = requests.get(f"{pair.office.url}/api/v1/tickets/by-hash/{remote['hash']}",
                         timeout=5).json()
    assert (local["number"], local["code"], local["source"]) == (
        view["number"], view["code"], "remote")
    page = requests.get(f"{pair.cloud.url}/t/{remote['hash']}", timeout=5)
    assert view["code"] in page.text

    # A remote cancel: pending on the cloud, applied by the office, shown on the page.
    r = requests.post(f"{pair.cloud.url}/api/v1/tickets/by-hash/{remote['hash']}/cancel",
                      timeout=5)
    assert r.status_code == 202, r.text
    view = wait_for("the remote cancel applied", state_on_cloud(pair, remote["hash"],
                                                                "CANCELED"))
    assert view["cancel_pending"] is False
    assert requests.get(f"{pair.office.url}/api/v1/tickets/by-hash/{remote['hash']}",
                        timeout=5).json()["state"] == "CANCELED"
    page = requests.get(f"{pair.cloud.url}/t/{remote['hash']}", timeout=5).text
    assert "anceled" in page or "ancelled" in page

    # A remote cancel that loses to a local call: refused by the office, in words.
    r = requests.post(f"{pair.cloud.url}/api/v1/queues/{pair.queue_id}/tickets", json={},
                      timeout=5)
    late = r.json()["hash"]
    wait_for("the second remote join", state_on_cloud(pair, late, "WAITING"))
    assert pair.call_next().json()["id"] == second["id"]
    assert pair.complete(second["id"]).status_code == 200
    assert pair.call_next().status_code == 200  # calls the remote one
    wait_for("its call on the cloud", state_on_cloud(pair, late, "CALLED"))
    requests.post(f"{pair.cloud.url}/api/v1/tickets/by-hash/{late}/cancel", timeout=5)
    view = wait_for("the refusal on the cloud", lambda: (
        (v := cloud_view(pair.cloud, late)) and not v["cancel_pending"] and v["message"]
        and v))
    assert view["state"] == "CALLED"
    assert view["message"] == "Too late to cancel: the ticket has already been called."

    # The office closes the queue: the cloud refuses remote joins at once, in words.
    requests.patch(f"{pair.office.url}/api/v1/queues/{pair.queue_id}", json={"open": False},
                   headers=pair.admin, timeout=5).raise_for_status()
    closed = wait_for("the closed queue refused by the cloud", lambda: (
        (r := requests.post(f"{pair.cloud.url}/api/v1/queues/{pair.queue_id}/tickets",
                            json={}, timeout=5)).status_code == 409 and r.json()))
    assert closed["code"] == "queue_closed" and closed["detail"]
    requests.patch(f"{pair.office.url}/api/v1/queues/{pair.queue_id}", json={"open": True},
                   headers=pair.admin, timeout=5).raise_for_status()

    # The cloud stopped: the office keeps joining fast; the backlog drains on return.
    pair.cloud.stop()
    times, offline = [], []
    for _ in range(20):
        t0 = time.perf_counter()
        offline.append(pair.join())
        times.append(time.perf_counter() - t0)
    assert max(times) < 1.0, times
    assert statistics.median(times) < 0.2, times
    wait_for("health offline in words", lambda: (
        (s := pair.health())["state"] == "offline" and s["backlog"] >= 20 and s["last_error"]),
        timeout=10)
    pair.restart_cloud()
    wait_for("the backlog drained", lambda: pair.health()["backlog"] == 0, timeout=20)
    for ticket in (offline[0], offline[-1]):
        view = cloud_view(pair.cloud, hash_of(ticket))
        assert view and view["state"] == "WAITING" and view["code"] == ticket["code"]
    assert pair.health()["state"] == "online"


def test_steady_state_lag_local_change_to_cloud(pair):
    """Local join → the cloud answers it by hash: p50/p95 over 50 changes (target p95 ≤ 1 s)."""
    wait_for("the first sync", lambda: pair.health()["state"] == "online")
    lags = []
    for _ in range(50):
        t0 = time.perf_counter()
        ticket = pair.join()
        wait_for("a join on the cloud", lambda: cloud_view(pair.cloud, hash_of(ticket)),
                 timeout=5, every=0.01)
        lags.append(time.perf_counter() - t0)
    lags.sort()
    p50, p95 = lags[len(lags) // 2], lags[int(len(lags) * 0.95) - 1]
    print(f"\nsync lag ({pair.database_url and 'postgres' or 'sqlite'} cloud, 50 joins): "
          f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms")
    assert p95 <= 1.0


def test_wrong_token_is_refused_and_health_says_so(tmp_path):
    cloud = CloudProcess(tmp_path / "cloud", env=CLOUD_ENV).start()
    data = tmp_path / "office"
    seed_accounts(data)
    add_office(tmp_path / "cloud", "")
    office = LiveServer(data, env=office_env(cloud.url, "not-the-token")).start()
    try:
        r = requests.post(cloud.url + "/api/v1/sync/push", timeout=5,
                          headers={"Authorization": "Bearer not-the-token"},
                          json={"install_id": "i", "epoch_id": "e", "head_seq": 0})
        assert r.status_code == 401 and r.json()["code"]
        sync = wait_for("health to name the refusal", lambda: (
            (s := requests.get(office.url + "/api/v1/health", timeout=5).json()["sync"])
            ["last_error"] and s), timeout=10)
        assert sync["state"] == "refused" and sync["error_code"] == "unauthorized"
        assert "token" in sync["last_error"] and "refused" in sync["last_error"]
    finally:
        office.stop()
        cloud.stop()


def test_receipt_carries_the_lan_page_and_the_cloud_copy_when_sync_is_on():
    from datetime import UTC, datetime

    from jonot_local.printing.receipt import Receipt, build_receipt

    base = dict(clinic="Clinic", queue="General", code="A001",
                issued_at=datetime(2026, 1, 1, tzinfo=UTC), people_ahead=0, wait_minutes=0,
                url="http://192.168.1.5:8080/t/abc")
    alone = build_receipt(Receipt(**base))
    both = build_receipt(Receipt(**base, cloud_url="https://cloud.example/t/abc"))
    assert b"https://cloud.example/t/abc" not in alone
    assert b"http://192.168.1.5:8080/t/abc" in both and b"https://cloud.example/t/abc" in both
    assert b"From anywhere (mobile data)" in both and b"Wi-Fi" in both


# -- one office behind a load balancer, two cloud processes on one PostgreSQL ------------------

class RoundRobin:
    """A TCP proxy on loopback handing each new connection to the next backend in turn.

    The office's client opens a connection per request, so its pushes and polls
    alternate between the backends. ``pushes[i]`` counts the pushes backend ``i`` got.
    """

    def __init__(self, ports: list[int]) -> None:
        import socket
        import threading

        self.ports = ports
        self.pushes = [0] * len(ports)
        self._turn = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self) -> RoundRobin:
        self._thread.start()
        return self

    def _accept(self) -> None:
        import socket
        import threading

        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                index = self._turn % len(self.ports)
                self._turn += 1
            try:
                backend = socket.create_connection(("127.0.0.1", self.ports[index]), timeout=5)
            except OSError:
                client.close()
                continue
            backend.settimeout(None)
            threading.Thread(target=self._pipe, args=(client, backend, index),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(backend, client, None),
                             daemon=True).start()

    def _pipe(self, src: Any, dst: Any, index: int | None) -> None:
        first = True
        try:
            while data := src.recv(65536):
                if first and index is not None and data.startswith(b"POST /api/v1/sync/push"):
                    with self._lock:
                        self.pushes[index] += 1
                first = False
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(2)

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()


def test_one_office_through_a_load_balancer_to_two_cloud_processes_on_postgres(
        pg_url, tmp_path):  # noqa: F811 - the fixture imported above
    """The office pushes through a round-robin proxy to cloud A and B (one PostgreSQL): every
    entry is applied once whichever took it, and a phone streaming from B sees a change
    pushed through A."""
    import sqlite3
    import threading

    import psycopg
    from jonot_local.sync.cloud.store import open_cloud_store

    from .test_cloud import read_events

    name = f"lb{time.time_ns() % 10**12}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg_url.rsplit("/", 1)[0] + "/" + name
    clouds = [CloudProcess(tmp_path / f"cloud{i}", url, env=CLOUD_ENV).start()
              for i in range(2)]
    creds = add_office(tmp_path / "cloud0", url)
    proxy = RoundRobin([c.port or int(c.url.rsplit(":", 1)[1]) for c in clouds]).start()
    data = tmp_path / "office"
    seed_accounts(data)
    office = LiveServer(data, env=office_env(proxy.url, creds["token"])).start()
    store = open_cloud_store(tmp_path, url)
    try:
        admin, staff = token(office.url), token(office.url, STAFF)
        setup = setup_office(office.url, admin, queues=1, desks=1)
        queue_id, desk_id = setup["queues"][0]["id"], setup["desks"][0]["id"]

        def join() -> dict[str, Any]:
            r = requests.post(f"{office.url}/api/v1/queues/{queue_id}/tickets", json={},
                              headers=staff, timeout=10)
            r.raise_for_status()
            return r.json()

        def call_next() -> dict[str, Any]:
            r = requests.post(f"{office.url}/api/v1/desks/{desk_id}/call-next",
                              headers=staff, timeout=10)
            r.raise_for_status()
            return r.json()

        joined = []
        for i in range(30):  # changes one by one, so pushes go to both processes in turn
            joined.append(join())
            if i % 3 == 2:
                requests.post(f"{office.url}/api/v1/tickets/{call_next()['id']}/complete",
                              headers=staff, timeout=10).raise_for_status()
            time.sleep(0.05)
        def health() -> dict[str, Any]:
            return requests.get(office.url + "/api/v1/health", timeout=5).json()["sync"]

        wait_for("the office's backlog drained", lambda: health()["backlog"] == 0, timeout=20)
        assert min(proxy.pushes) >= 3, proxy.pushes  # both processes took pushes

        # A phone on process B streams a waiting ticket; the office's calls reach it.
        waiting = [t for t in joined if (cloud_view(clouds[1], hash_of(t)) or {}).get(
            "state") == "WAITING"]
        watched = waiting[1]
        events: list = []
        resp = requests.get(f"{clouds[1].url}/api/v1/tickets/by-hash/{hash_of(watched)}/events",
                            stream=True, timeout=20)
        def read() -> None:
            # closed by the test once it saw what it waited for
            with contextlib.suppress(requests.RequestException, AttributeError, ValueError):
                read_events(resp, events, 10)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        wait_for("the stream's first event", lambda: events, timeout=5)
        assert events[0][1]["position"] == 2
        before = list(proxy.pushes)
        t0 = time.monotonic()
        call_next()
        call_next()  # the watched ticket
        wait_for("the call seen on process B's stream", lambda: any(
            d.get("state") == "CALLED" for _, d in events), timeout=10)
        assert time.monotonic() - t0 < 5
        resp.close()
        reader.join(5)
        assert sum(proxy.pushes) > sum(before)

        # Exactly once: the cloud holds the office's tickets at their versions, one epoch,
        # one record per entry, nothing dead-lettered.
        wait_for("quiet", lambda: health()["backlog"] == 0, timeout=10)
        db = sqlite3.connect(data / "jonot.sqlite3")
        local = dict(db.execute("SELECT id, version FROM tickets").fetchall())
        epoch = db.execute("SELECT epoch_id FROM sync_identity").fetchone()[0]
        db.close()
        office_id = creds["office_id"]
        with store.read() as tx:
            cloud_tickets = {r["ticket_id"]: r["version"] for r in tx.all(
                "SELECT ticket_id, version FROM ticket WHERE office_id = ?", (office_id,))}
            epochs = tx.all("SELECT epoch_id, acked_seq, status FROM office_epoch "
                            "WHERE office_id = ?", (office_id,))
            entries = tx.one("SELECT COUNT(*) AS n, MAX(seq) AS top FROM applied_entry "
                             "WHERE office_id = ?", (office_id,))
            dead = tx.one("SELECT COUNT(*) AS n FROM dead_letter WHERE office_id = ?",
                          (office_id,))
        assert cloud_tickets == local
        assert [(e["epoch_id"], e["status"]) for e in epochs] == [(epoch, "live")]
        assert entries["n"] == entries["top"] == epochs[0]["acked_seq"]
        assert dead["n"] == 0
    finally:
        store.close()
        office.stop()
        proxy.stop()
        for c in clouds:
            c.stop()
