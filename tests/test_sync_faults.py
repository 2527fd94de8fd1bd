"""An office and a real cloud process on loopback, syncing through faults.

- Chaos: the office's sync goes through ``tests/chaos_proxy.py`` (≈30 % of requests
  dropped, duplicated, delayed, replayed late or cut mid-body) while more than 1,000
  mixed operations run: local joins, calls, completions, no-shows and cancels at the
  office, remote joins and remote cancels at the cloud.
- kill -9: the office and the cloud killed at random moments while operations run,
  restarted, again and again.
- Clock: the office's clock days behind, a year ahead, or stepped (libfaketime).

Each ends with the same check once quiet: the cloud holds exactly the office's tickets
(same versions, states, numbers), nothing lost or doubled, one live epoch with every entry
applied once and nothing dead-lettered, and every relayed action applied by the office
exactly once with its result on the cloud. SQLite and PostgreSQL cloud stores.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from jonot_local.sync.cloud.store import open_cloud_store

from .chaos_proxy import FAULTS, ChaosProxy
from .cloud_support import CloudProcess, free_port
from .support import STAFF, LiveServer, seed_accounts, setup_office, token
from .test_cloud import pg_url  # noqa: F401 - the PostgreSQL fixture
from .test_sync_e2e import CLOUD_ENV, add_office, hash_of, office_env

pytestmark = pytest.mark.slow

#: Sync settings of the office in these tests: short timeouts and backoff, so a run
#: converges in seconds after the faults stop.
FAST_SYNC = {"JONOT_SYNC_HEARTBEAT_S": "0.5", "JONOT_SYNC_DEBOUNCE_S": "0",
             "JONOT_SYNC_TIMEOUT_S": "2", "JONOT_SYNC_BACKOFF_MIN_S": "0.02",
             "JONOT_SYNC_BACKOFF_MAX_S": "0.5"}
TICKET_COLUMNS = ("version", "state", "number", "code", "queue_id", "desk_id")


class Rig:
    """A cloud process, an office process syncing with it (maybe through a chaos proxy),
    and a driver of operations on both."""

    def __init__(self, tmp: Path, database_url: str, seed: int,
                 proxy_rate: float | None = None, office_env_extra: dict[str, str] | None = None
                 ) -> None:
        self.tmp, self.database_url, self.seed = tmp, database_url, seed
        self.rng = random.Random(seed)
        self.cloud = CloudProcess(tmp / "cloud", database_url, env=CLOUD_ENV,
                                  port=free_port()).start()
        self.proxy: ChaosProxy | None = None
        self.office = LiveServer(tmp / "office")
        try:
            self._start(proxy_rate, office_env_extra)
        except BaseException:
            self.office.stop()
            if self.proxy:
                self.proxy.stop()
            self.cloud.stop()
            raise

    def _start(self, proxy_rate: float | None, office_env_extra: dict[str, str] | None
               ) -> None:
        tmp, database_url = self.tmp, self.database_url
        creds = add_office(tmp / "cloud", database_url)
        self.office_id = creds["office_id"]
        self.proxy = ChaosProxy(self.cloud.port, rate=proxy_rate, seed=self.seed,
                                stall_s=2.5).start() \
            if proxy_rate is not None else None
        self.data = tmp / "office"
        seed_accounts(self.data)
        self.env = {**office_env(self.proxy.url if self.proxy else self.cloud.url,
                                 creds["token"]), **FAST_SYNC, **(office_env_extra or {})}
        self.office = LiveServer(self.data, env=self.env).start()
        self.staff = token(self.office.url, STAFF)
        setup = setup_office(self.office.url, token(self.office.url), queues=2, desks=2)
        self.queue_ids = [q["id"] for q in setup["queues"]]
        self.desk_ids = [d["id"] for d in setup["desks"]]
        self.store = open_cloud_store(tmp / "cloud", database_url)
        self.store_open = True
        self.waiting: list[str] = []  # local tickets joined (maybe waiting still)
        self.called: list[str] = []
        self.hashes: list[str] = []
        self.ops: Counter[str] = Counter()
        self.ok: Counter[str] = Counter()
        # Remote operations need the cloud to know the queues first.
        deadline = time.monotonic() + 30
        while not self._cloud_knows_queues():
            assert time.monotonic() < deadline, "the queues never reached the cloud"
            time.sleep(0.1)

    def _cloud_knows_queues(self) -> bool:
        with self.store.read() as tx:
            rows = tx.all("SELECT entity_id FROM entity WHERE kind = 'queue' AND office_id = ?",
                          (self.office_id,))
        return {r["entity_id"] for r in rows} >= set(self.queue_ids)

    # -- processes -------------------------------------------------------------------------

    def kill_office(self) -> None:
        self.office.kill9()

    def restart_office(self) -> None:
        self.office.stop()
        self.office = LiveServer(self.data, env=self.env).start()
        self.staff = token(self.office.url, STAFF)

    def kill_cloud(self) -> None:
        assert self.cloud.proc is not None
        self.cloud.proc.kill()
        self.cloud.proc.wait(10)

    def restart_cloud(self) -> None:
        self.cloud.stop()
        self.cloud = CloudProcess(self.tmp / "cloud", self.database_url, env=CLOUD_ENV,
                                  port=self.cloud.port).start()

    def stop(self) -> None:
        self.office.stop()
        if self.proxy:
            self.proxy.stop()
        self.cloud.stop()
        if getattr(self, "store_open", False):
            self.store.close()

    # -- operations ------------------------------------------------------------------------

    def _office(self, path: str, **kw: Any) -> requests.Response:
        return requests.post(f"{self.office.url}/api/v1{path}", headers=self.staff,
                             timeout=10, **kw)

    def _cloud(self, path: str) -> requests.Response:
        return requests.post(f"{self.cloud.url}/api/v1{path}", json={}, timeout=10)

    def operation(self) -> None:
        """One operation drawn from the mix (its refusal, e.g. nothing to call, counts too)."""
        kind = self.rng.choices(
            ["join", "call", "complete", "no_show", "cancel", "remote_join", "remote_cancel"],
            weights=[30, 20, 12, 8, 6, 14, 10])[0]
        self.ops[kind] += 1
        r: requests.Response | None = None
        if kind == "join":
            r = self._office(f"/queues/{self.rng.choice(self.queue_ids)}/tickets", json={})
            if r.ok:
                self.waiting.append(r.json()["id"])
                self.hashes.append(hash_of(r.json()))
        elif kind == "call":
            r = self._office(f"/desks/{self.rng.choice(self.desk_ids)}/call-next")
            if r.ok:
                self.called.append(r.json()["id"])
        elif kind in ("complete", "no_show") and self.called:
            ticket_id = self.called.pop(self.rng.randrange(len(self.called)))
            r = self._office(f"/tickets/{ticket_id}/"
                             f"{'complete' if kind == 'complete' else 'skip'}")
        elif kind == "cancel" and self.waiting:
            r = self._office(f"/tickets/{self.rng.choice(self.waiting)}/cancel")
        elif kind == "remote_join":
            r = self._cloud(f"/queues/{self.rng.choice(self.queue_ids)}/tickets")
            if r.status_code == 202:
                self.hashes.append(r.json()["hash"])
        elif kind == "remote_cancel" and self.hashes:
            r = self._cloud(f"/tickets/by-hash/{self.rng.choice(self.hashes)}/cancel")
        if r is not None and r.status_code < 300:
            self.ok[kind] += 1

    def run(self, n: int, stop: threading.Event | None = None, pace_s: float = 0.0) -> None:
        for _ in range(n):
            if stop is not None and stop.is_set():
                return
            if pace_s:
                time.sleep(pace_s)  # spread over more pushes, so more of them meet faults
            try:
                self.operation()
            except requests.RequestException:
                if stop is None:
                    raise
                return  # the process under it was killed

    # -- the end check ---------------------------------------------------------------------

    def office_view(self) -> dict[str, Any]:
        db = sqlite3.connect(f"file:{self.data / 'jonot.sqlite3'}?mode=ro", uri=True,
                             timeout=10)
        try:
            db.row_factory = sqlite3.Row
            tickets = {r["id"]: tuple(r[c] for c in TICKET_COLUMNS) for r in db.execute(
                f"SELECT id, {', '.join(TICKET_COLUMNS)} FROM tickets")}
            sources = dict(db.execute("SELECT id, source FROM tickets").fetchall())
            origins = db.execute("SELECT origin_queue_id, number FROM tickets").fetchall()
            head = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
            head_seq = (head.fetchone() or [0])[0]
            st = db.execute("SELECT acked_seq, last_applied_cmd_seq, frozen_at "
                            "FROM sync_state").fetchone()
            epoch = db.execute("SELECT epoch_id FROM sync_identity").fetchone()[0]
            commands = [dict(r) for r in db.execute(
                "SELECT command_id, cmd_seq, kind, result, ticket_id FROM applied_commands")]
        finally:
            db.close()
        return {"tickets": tickets, "sources": sources, "origins": origins, "head": head_seq,
                "acked": st["acked_seq"], "applied_through": st["last_applied_cmd_seq"],
                "frozen": st["frozen_at"], "epoch": epoch, "commands": commands}

    def cloud_view(self) -> dict[str, Any]:
        with self.store.read() as tx:
            tickets = {r["ticket_id"]: tuple(r[c] for c in TICKET_COLUMNS) for r in tx.all(
                f"SELECT ticket_id, {', '.join(TICKET_COLUMNS)} FROM ticket "
                "WHERE office_id = ?", (self.office_id,))}
            commands = tx.all("SELECT command_id, cmd_seq, kind, ticket_id, state, result "
                              "FROM command WHERE office_id = ?", (self.office_id,))
            epochs = tx.all("SELECT epoch_id, acked_seq, status, generation FROM office_epoch "
                            "WHERE office_id = ?", (self.office_id,))
            entries = tx.one("SELECT COUNT(*) AS n, MAX(seq) AS top FROM applied_entry "
                             "WHERE office_id = ?", (self.office_id,))
            dead = tx.one("SELECT COUNT(*) AS n FROM dead_letter WHERE office_id = ?",
                          (self.office_id,))["n"]
            office = tx.one("SELECT status, clock_skew_s FROM office WHERE office_id = ?",
                            (self.office_id,))
        return {"tickets": tickets, "commands": commands, "epochs": epochs,
                "entries": (int(entries["n"]), int(entries["top"] or 0)), "dead": int(dead),
                "office": office}

    def _quiet(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        office, cloud = self.office_view(), self.cloud_view()
        resolved = all(c["state"] in ("applied", "rejected", "withdrawn")
                       for c in cloud["commands"])
        if (office["acked"] == office["head"] and resolved
                and len(office["commands"]) == sum(c["state"] != "withdrawn"
                                                   for c in cloud["commands"])
                and set(office["tickets"]) <= set(cloud["tickets"])):
            return office, cloud
        return None

    def check_converged(self, timeout: float = 90.0) -> dict[str, Any]:
        """Wait for quiet, then check everything; figures for the report."""
        if self.proxy:
            self.proxy.calm()
        deadline = time.monotonic() + timeout
        while (views := self._quiet()) is None:
            if time.monotonic() > deadline:
                office, cloud = self.office_view(), self.cloud_view()
                raise AssertionError(
                    f"not converged in {timeout} s: office head {office['head']} acked "
                    f"{office['acked']}, {len(office['commands'])} commands applied, cloud "
                    f"{Counter(c['state'] for c in cloud['commands'])}, epochs "
                    f"{cloud['epochs']}" + (f"; {self.proxy.summary()}" if self.proxy else ""))
            time.sleep(0.2)
        office, cloud = views
        # One epoch, live; every entry applied once, in order; nothing dead-lettered.
        assert [(e["epoch_id"], e["status"]) for e in cloud["epochs"]] == [
            (office["epoch"], "live")], cloud["epochs"]
        assert cloud["entries"] == (office["head"], office["head"])
        assert int(cloud["epochs"][0]["acked_seq"]) == office["head"]
        assert cloud["dead"] == 0
        assert office["frozen"] is None and cloud["office"]["status"] == "active"
        # Relayed actions: each applied by the office exactly once, its result on the cloud.
        by_id = {c["command_id"]: c for c in cloud["commands"]}
        applied_ids = [c["command_id"] for c in office["commands"]]
        assert len(applied_ids) == len(set(applied_ids))
        assert set(applied_ids) == {i for i, c in by_id.items() if c["state"] != "withdrawn"}
        for c in office["commands"]:
            assert by_id[c["command_id"]]["state"] == c["result"], c
            assert int(by_id[c["command_id"]]["cmd_seq"]) == c["cmd_seq"]
        assert sorted(c["cmd_seq"] for c in office["commands"]) == list(
            range(1, len(office["commands"]) + 1))
        assert office["applied_through"] == len(office["commands"])
        joins = [c for c in office["commands"] if c["kind"] == "join"]
        joined = {c["ticket_id"] for c in joins if c["result"] == "applied"}
        remote = {i for i, s in office["sources"].items() if s == "remote"}
        assert joined == remote and len(joined) == sum(c["result"] == "applied" for c in joins)
        # The cloud holds exactly the office's tickets; besides them only remote joins
        # the office never took (withdrawn before it fetched them, or refused).
        not_taken = {c["ticket_id"] for c in cloud["commands"] if c["kind"] == "join" and (
            c["state"] in ("withdrawn", "rejected"))}
        cloud_tickets = {i: t for i, t in cloud["tickets"].items() if i not in not_taken}
        assert cloud_tickets == office["tickets"]
        assert {cloud["tickets"][i][1] for i in not_taken} <= {"CANCELED", "REJECTED"}
        assert len(set(office["origins"])) == len(office["origins"])  # numbers unique
        # What a phone sees: the cloud's view by hash is the office's (state, number,
        # position in the queue).
        sample = self.rng.sample(self.hashes, min(15, len(self.hashes)))
        for ticket_hash in sample:
            at_cloud = requests.get(f"{self.cloud.url}/api/v1/tickets/by-hash/{ticket_hash}",
                                    timeout=10)
            at_office = requests.get(f"{self.office.url}/api/v1/tickets/by-hash/{ticket_hash}",
                                     timeout=10)
            if at_office.status_code == 404:  # a remote join the office never took
                assert at_cloud.json()["state"] in ("CANCELED", "REJECTED")
                continue
            assert at_cloud.status_code == at_office.status_code == 200
            mine, theirs = at_office.json(), at_cloud.json()
            assert [theirs[k] for k in ("state", "number", "code", "position")] == [
                mine[k] for k in ("state", "number", "code", "position")], (mine, theirs)
        states = Counter(t[1] for t in office["tickets"].values())
        return {"tickets": len(office["tickets"]), "entries": office["head"],
                "commands": len(office["commands"]), "states": dict(states),
                "skew": cloud["office"]["clock_skew_s"]}


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request) -> str:
    return request.getfixturevalue("pg_url") if request.param == "postgres" else ""


def seed_of_the_run(what: str) -> int:
    """``JONOT_CHAOS_SEED`` when set (a replay), else a fresh one; printed either way."""
    env = os.environ.get("JONOT_CHAOS_SEED")
    seed = int(env) if env else random.SystemRandom().randrange(2**32)
    print(f"\n{what}: seed {seed} (replay with JONOT_CHAOS_SEED={seed})")
    return seed


def test_a_thousand_operations_through_a_chaos_proxy_converge_exactly(database_url, tmp_path):
    rig = Rig(tmp_path, database_url, seed_of_the_run("chaos test"), proxy_rate=0.3)
    assert rig.proxy is not None
    try:
        t0 = time.monotonic()
        rig.run(1100, pace_s=0.01)
        ran = time.monotonic() - t0
        t1 = time.monotonic()
        figures = rig.check_converged()
        print(f"\n{sum(rig.ops.values())} operations ({dict(rig.ops)}; done: "
              f"{dict(rig.ok)}) in {ran:.1f} s, converged {time.monotonic() - t1:.1f} s "
              f"after the faults stopped; {figures}\n{rig.proxy.summary()}")
        assert sum(rig.ops.values()) >= 1000
        assert rig.ok["remote_join"] >= 50 and rig.ok["remote_cancel"] >= 10
        assert rig.ok["complete"] >= 20 and rig.ok["no_show"] >= 10
        requests_seen = rig.proxy.counts["requests"]
        faults = sum(rig.proxy.counts[f] for f in FAULTS)
        assert faults >= 0.2 * requests_seen, rig.proxy.summary()
        assert all(rig.proxy.counts[f] for f in FAULTS if f != "stall"), rig.proxy.summary()
    finally:
        rig.stop()


def test_kill_9_of_office_and_cloud_at_random_moments(database_url, tmp_path):
    """15 kills of the office and 15 of the cloud per store (60 for both), mid-operations."""
    rig = Rig(tmp_path, database_url, seed_of_the_run("kill test"))
    rng = rig.rng
    victims = ["office"] * 15 + ["cloud"] * 15
    rng.shuffle(victims)
    try:
        for victim in victims:
            stop = threading.Event()

            def kill(victim: str = victim, stop: threading.Event = stop) -> None:
                stop.set()
                rig.kill_office() if victim == "office" else rig.kill_cloud()

            timer = threading.Timer(rng.uniform(0.05, 0.6), kill)
            timer.start()
            rig.run(40, stop)
            timer.join()
            rig.restart_office() if victim == "office" else rig.restart_cloud()
        rig.run(20)
        figures = rig.check_converged()
        print(f"\n{len(victims)} kills ({Counter(victims)}), {sum(rig.ops.values())} "
              f"operations ({dict(rig.ok)} done); {figures}")
        assert figures["commands"] >= 10
    finally:
        rig.stop()


# -- the office's clock wrong (libfaketime) ------------------------------------------------

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
SLEEP_SHIM = Path(__file__).parent / "faketime_site"


def ensure_faketime() -> str | None:
    """libfaketime's path, installed from Debian (``faketime``) when missing and root."""
    if not os.path.exists(FAKETIME_LIB) and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for args in (["install", "-y", "-q", "faketime"], ["update", "-q"],
                     ["install", "-y", "-q", "faketime"]):
            if os.path.exists(FAKETIME_LIB):
                break
            subprocess.run(["apt-get", *args], env=env, capture_output=True, timeout=600,
                           check=False)
    return FAKETIME_LIB if os.path.exists(FAKETIME_LIB) else None


def faketime_env(clock_file: Path) -> dict[str, str]:
    """The office under libfaketime, its offset read from ``clock_file`` (changeable).

    Only the wall clock is faked: a faked monotonic clock hangs Python's timed waits
    under libfaketime 0.9.10, and with it left alone that release fails ``time.sleep``
    (EINVAL from ``clock_nanosleep``), so ``faketime_site`` makes ``sleep`` a timed wait.
    """
    lib = ensure_faketime()
    if lib is None:
        pytest.skip("libfaketime is not installed and could not be (apt-get install "
                    "faketime needs root): the office-clock runs are skipped")
    # Fewer server threads: each thread's start is slow under libfaketime's file look-ups.
    return {"JONOT_THREADS": "8", "JONOT_STREAM_RESERVE": "2",
            "LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": str(clock_file),
            "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(SLEEP_SHIM),
                                                        os.environ.get("PYTHONPATH")]))}


def set_clock(clock_file: Path, offset: str) -> None:
    """Move the office's clock: the file is replaced whole, never seen half written
    (libfaketime reads it on every call; an empty file would mean "no offset")."""
    part = clock_file.with_suffix(".part")
    part.write_text(offset + "\n")
    os.replace(part, clock_file)


@pytest.mark.parametrize("clock", ["-3d", "+365d", "stepped"])
def test_office_clock_days_behind_or_a_year_ahead_changes_nothing(clock, tmp_path):
    clock_file = tmp_path / "office-clock"
    offsets = ["-3d", "+365d", "-2h"] if clock == "stepped" else [clock]
    set_clock(clock_file, offsets[0])
    rig = Rig(tmp_path, "", 7, office_env_extra=faketime_env(clock_file))
    try:
        for offset in offsets:
            set_clock(clock_file, offset)
            time.sleep(0.2)
            rig.run(80)
        figures = rig.check_converged()
        # The clock was really wrong: the cloud measured the skew of the last offset.
        expected = {"-3d": -3 * 86_400, "+365d": 365 * 86_400, "-2h": -7_200}[offsets[-1]]
        assert figures["skew"] is not None and abs(figures["skew"] - expected) < 120, figures
        # ... and what a phone sees on the cloud is the office's state, fresh.
        ticket_hash = rig.hashes[-1]
        view = requests.get(f"{rig.cloud.url}/api/v1/tickets/by-hash/{ticket_hash}",
                            timeout=5).json()
        assert view["stale"] is False
        print(f"\noffice clock {offsets}: {figures}")
    finally:
        rig.stop()
