"""Real servers under concurrent load on loopback: numbering, call-next races, crashes.

- 200 concurrent joins are numbered exactly 1..200;
- 8 desks racing call-next until the queue is empty call each ticket once;
- two server processes on one database race call-next: each ticket called once;
- kill -9 during a join load, then restart: every acknowledged ticket is there,
  numbering continues with no gap and no reuse.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from jonot_local.db import DB_FILENAME

from .support import (
    ADMIN,
    STAFF,
    UNLIMITED_JOINS,
    LiveServer,
    seed_accounts,
    setup_office,
    token,
    wait_for_health,
)

pytestmark = pytest.mark.slow

# Look-ups by hash are checked in bulk here: lift the per-client budget and the floor.
SERVER_ENV = {"JONOT_HASH_LOOKUP_PER_MIN": "1000000", "JONOT_HASH_LOOKUP_FLOOR_MS": "0",
              **UNLIMITED_JOINS}
TIMEOUT = 15


class ThreadSessions:
    """One ``requests.Session`` per thread (sessions are not shared across threads)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[requests.Session] = []
        self._lock = threading.Lock()

    def get(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            with self._lock:
                self._all.append(session)
        return session

    def close(self) -> None:
        for session in self._all:
            session.close()


@pytest.fixture
def sessions() -> Iterator[ThreadSessions]:
    pool = ThreadSessions()
    yield pool
    pool.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "live"
    seed_accounts(path)
    return path


@pytest.fixture
def servers() -> Iterator[list[Any]]:
    """Servers started by a test; every one still running is stopped at the end."""
    started: list[Any] = []
    yield started
    for server in started:
        server.stop()


def start_server(servers: list[Any], data_dir: Path) -> LiveServer:
    server = LiveServer(data_dir, env=SERVER_ENV).start()
    servers.append(server)
    return server


def join_many(base: str, queue_id: str, count: int, sessions: ThreadSessions,
              workers: int = 32) -> list[requests.Response]:
    def one(_: int) -> requests.Response:
        return sessions.get().post(f"{base}/api/v1/queues/{queue_id}/tickets", json={},
                                   timeout=TIMEOUT)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(count)))


def stored_calls(data_dir: Path) -> tuple[dict[str, str], Counter[str]]:
    """Ticket states and the number of calls (interaction rows) per ticket, from the file."""
    conn = sqlite3.connect(f"file:{data_dir / DB_FILENAME}?mode=ro", uri=True)
    try:
        states = dict(conn.execute("SELECT id, state FROM tickets").fetchall())
        calls = Counter(r[0] for r in conn.execute("SELECT ticket_id FROM interactions"))
    finally:
        conn.close()
    return states, calls


def race_call_next(desk_urls: list[tuple[str, str]], headers: list[dict[str, str]],
                   sessions: ThreadSessions) -> tuple[list[list[str]], Counter[int]]:
    """One thread per desk pressing call-next until ``queue_empty``.

    Returns the ticket ids each desk got and a count of every HTTP status seen.
    """
    got: list[list[str]] = [[] for _ in desk_urls]
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(len(desk_urls))

    def desk(i: int) -> None:
        base, desk_id = desk_urls[i]
        session = sessions.get()
        barrier.wait()
        while True:
            r = session.post(f"{base}/api/v1/desks/{desk_id}/call-next", headers=headers[i],
                             timeout=TIMEOUT)
            with lock:
                statuses[r.status_code] += 1
            if r.status_code == 200:
                got[i].append(r.json()["id"])
                continue
            if r.status_code == 404 and r.json()["code"] == "queue_empty":
                return
            raise AssertionError(f"call-next answered {r.status_code}: {r.text}")

    with ThreadPoolExecutor(len(desk_urls)) as pool:
        for future in [pool.submit(desk, i) for i in range(len(desk_urls))]:
            future.result()
    return got, statuses


def assert_each_called_once(joined: list[str], got: list[list[str]], data_dir: Path) -> None:
    called = [tid for desk in got for tid in desk]
    duplicates = [tid for tid, n in Counter(called).items() if n > 1]
    assert not duplicates, f"{len(duplicates)} tickets were called by two desks"
    assert sorted(called) == sorted(joined), "every ticket is called, none is missing"
    states, calls = stored_calls(data_dir)
    assert all(states[tid] == "CALLED" for tid in joined)
    assert all(calls[tid] == 1 for tid in joined), "one interaction per call"


# -- numbering under concurrent joins -------------------------------------------------------

def test_200_concurrent_joins_are_numbered_1_to_200(servers, data_dir, sessions):
    server = start_server(servers, data_dir)
    office = setup_office(server.url, token(server.url, ADMIN), queues=1, desks=1)
    queue = office["queues"][0]
    responses = join_many(server.url, queue["id"], 200, sessions)
    assert [r.status_code for r in responses] == [201] * 200
    tickets = [r.json() for r in responses]
    assert sorted(t["number"] for t in tickets) == list(range(1, 201))
    assert len({t["code"] for t in tickets}) == 200
    assert len({t["hash"] for t in tickets}) == 200
    assert len({t["id"] for t in tickets}) == 200
    staff = token(server.url, STAFF)
    listing = requests.get(f"{server.url}/api/v1/tickets",
                           params={"queue": queue["id"], "limit": 500, "sort": "number"},
                           headers=staff, timeout=TIMEOUT).json()
    assert listing["total"] == 200
    assert [t["number"] for t in listing["items"]] == list(range(1, 201))
    # Positions are consistent once the dust has settled: 1..200 in number order.
    r = requests.get(f"{server.url}/api/v1/tickets/by-hash/{tickets[0]['hash']}",
                     timeout=TIMEOUT)
    assert r.json()["position"] == tickets[0]["number"]


# -- call-next races -------------------------------------------------------------------------

def test_8_desks_racing_call_next_call_each_ticket_once(servers, data_dir, sessions):
    server = start_server(servers, data_dir)
    office = setup_office(server.url, token(server.url, ADMIN), queues=1, desks=8)
    responses = join_many(server.url, office["queues"][0]["id"], 300, sessions)
    assert all(r.status_code == 201 for r in responses)
    joined = [r.json()["id"] for r in responses]
    headers = [token(server.url, STAFF) for _ in range(8)]  # each desk its own sign-in
    desks = [(server.url, d["id"]) for d in office["desks"]]
    got, statuses = race_call_next(desks, headers, sessions)
    assert statuses[200] == 300 and set(statuses) == {200, 404}
    assert_each_called_once(joined, got, data_dir)
    assert sum(1 for g in got if g) > 1, "the desks really raced"


SECOND_PROCESS = """
import sys
from pathlib import Path

from jonot_local.app import create_app
from jonot_local.server import make_server, run_until_signal

app = create_app({"data_dir": Path(sys.argv[1]), "hash_lookup_floor_ms": 0})
server = make_server(app, "127.0.0.1", 0)
print(f"http://127.0.0.1:{server.effective_port}/api/v1/health", flush=True)
run_until_signal(server)
"""


class SecondProcess(LiveServer):
    """Another server process on the same data dir.

    ``jonot-local serve`` refuses a data dir that a running server holds (its
    lock file), so this one is started from the app factory directly: what is
    under test is that SQLite serialises call-next across processes.
    """

    def start(self, timeout: float = 20.0) -> SecondProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SECOND_PROCESS, str(self.data_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("http://"):
            self.proc.kill()
            raise RuntimeError(f"second server did not start: {self.proc.stderr.read()}")
        self.url = line.strip().removesuffix("/api/v1/health")
        wait_for_health(self.url, time.monotonic() + timeout)
        return self


def test_two_server_processes_racing_call_next_call_each_ticket_once(servers, data_dir,
                                                                     sessions):
    first = start_server(servers, data_dir)
    second = SecondProcess(data_dir, env=SERVER_ENV).start()
    servers.append(second)
    office = setup_office(first.url, token(first.url, ADMIN), queues=1, desks=8)
    queue_id = office["queues"][0]["id"]
    # Joins through both processes at once, too: one counter in one file.
    half = [join_many(url, queue_id, 150, sessions, workers=8)
            for url in (first.url, second.url)]
    joined = [r.json() for part in half for r in part]
    assert sorted(t["number"] for t in joined) == list(range(1, 301))
    headers = [token(url, STAFF) for url in [first.url] * 4 + [second.url] * 4]
    desks = [(first.url if i < 4 else second.url, d["id"])
             for i, d in enumerate(office["desks"])]
    got, statuses = race_call_next(desks, headers, sessions)
    assert statuses[200] == 300 and set(statuses) == {200, 404}
    assert_each_called_once([t["id"] for t in joined], got, data_dir)
    by_process = [sum(len(g) for g in got[:4]), sum(len(g) for g in got[4:])]
    assert min(by_process) > 0, f"both processes called tickets: {by_process}"


# -- crash during a join load --------------------------------------------------------------

def load_until_killed(server: LiveServer, queue_id: str, sessions: ThreadSessions,
                      acked: list[dict[str, Any]], at_least: int) -> None:
    """Join from 8 threads; kill -9 the server once ``at_least`` joins were acknowledged."""
    lock = threading.Lock()
    round_acks: list[dict[str, Any]] = []
    errors: list[str] = []
    enough = threading.Event()

    def client() -> None:
        session = requests.Session()  # a fresh connection per round (the old server is gone)
        try:
            while True:
                try:
                    r = session.post(f"{server.url}/api/v1/queues/{queue_id}/tickets",
                                     json={}, timeout=TIMEOUT)
                except requests.RequestException:
                    return  # the server died under us: this join may or may not exist
                if r.status_code != 201:
                    errors.append(f"{r.status_code}: {r.text}")
                    return
                with lock:
                    round_acks.append(r.json())
                    if len(round_acks) >= at_least:
                        enough.set()
        finally:
            session.close()

    threads = [threading.Thread(target=client, name=f"joiner-{i}") for i in range(8)]
    for t in threads:
        t.start()
    enough.wait(30)
    server.kill9()
    for t in threads:
        t.join(TIMEOUT + 5)
    assert not errors, errors[:3]
    assert len(round_acks) >= at_least
    acked.extend(round_acks)


def check_everything_acknowledged_survived(server: LiveServer, queue_id: str,
                                           acked: list[dict[str, Any]],
                                           staff: dict[str, str]) -> int:
    """Every acknowledged ticket is stored as it was; numbers are 1..N. Returns N."""
    session = requests.Session()
    try:
        numbers: list[int] = []
        stored: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            page = session.get(f"{server.url}/api/v1/tickets", headers=staff, timeout=TIMEOUT,
                               params={"queue": queue_id, "sort": "number", "limit": 500,
                                       "offset": offset}).json()
            numbers += [t["number"] for t in page["items"]]
            stored.update({t["id"]: t for t in page["items"]})
            offset += len(page["items"])
            if offset >= page["total"]:
                break
        assert numbers == list(range(1, len(numbers) + 1)), "no gap, no duplicate"
        for ticket in acked:
            assert ticket["id"] in stored, f"acknowledged {ticket['code']} was lost"
            assert stored[ticket["id"]]["number"] == ticket["number"]
            assert stored[ticket["id"]]["hash"] == ticket["hash"]
            r = session.get(f"{server.url}/api/v1/tickets/by-hash/{ticket['hash']}",
                            timeout=TIMEOUT)
            assert r.status_code == 200 and r.json()["id"] == ticket["id"]
            assert r.json()["code"] == ticket["code"]
        return len(numbers)
    finally:
        session.close()


def test_kill_9_during_joins_loses_no_acknowledged_ticket(servers, data_dir, sessions):
    server = start_server(servers, data_dir)
    queue_id = setup_office(server.url, token(server.url, ADMIN), queues=1)["queues"][0]["id"]
    acked: list[dict[str, Any]] = []
    for _ in range(3):
        load_until_killed(server, queue_id, sessions, acked, at_least=60)
        server = start_server(servers, data_dir)
        staff = token(server.url, STAFF)
        count = check_everything_acknowledged_survived(server, queue_id, acked, staff)
        assert count >= len(acked)
        r = requests.post(f"{server.url}/api/v1/queues/{queue_id}/tickets", json={},
                          timeout=TIMEOUT)
        assert r.status_code == 201
        assert r.json()["number"] == count + 1, "numbering continues, nothing is reused"
        acked.append(r.json())
    assert len({t["number"] for t in acked}) == len(acked)
