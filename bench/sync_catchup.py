"""Catch-up: an office with a backlog of 100,000 outbox entries meets its cloud.

``python -m bench sync-catchup [--quick]`` (or ``python -m bench.sync_catchup
[--changes N] [--backend sqlite|postgres|both]``).

For each cloud store (SQLite; PostgreSQL on a throw-away cluster with fsync on):

1. an office data dir is filled through the domain in big transactions: rounds
   of 1,000 joins (one outbox entry per ticket) then 1,000 call + complete
   (one entry per ticket: an entity touched twice in one transaction gets one
   entry), over 4 queues, until N entries wait — what a busy office writes
   while its cloud is away;
2. ``jonot-local cloud serve`` starts (the office registered), then ``jonot-local
   serve`` with sync on, both real processes on loopback;
3. the clock runs from the office's start until the cloud's cursor for this
   office (``office_epoch.acked_seq``, read from the cloud's database) reaches
   the head of the backlog; meanwhile a desk calls over HTTP (staff token,
   ``POST /api/v1/desks/{id}/call-next``, then complete and a new join, every
   20 ms) and each call-next is timed;
4. once the office reports an empty backlog the same desk loop runs again
   (idle: only heartbeats), for comparison, and the cloud must hold every
   ticket the office has.

Target: the backlog drained in ≤ 30 s. Figures, not a test: a slow drain is
reported, not failed.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

from jonot_local.sync import outbox

from jonot_local.db import open_store
from jonot_local.domain import tickets, users

from .common import (
    HttpClient,
    ServerProcess,
    bearer_headers,
    jonot_server,
    latency_summary,
    note,
    print_table,
    seed_office,
    temp_dir,
)

TARGET_S = 30.0
STAFF = ("bench-staff", "bench-staff-password")
N_QUEUES = 4
CHUNK = 1000
DESK_EVERY_S = 0.02
OFFICE_ENV = {"JONOT_BACKUP_INTERVAL_S": "0", "JONOT_JOIN_LIVE_MAX": "1000000000",
              "JONOT_JOIN_PER_MIN": "1000000000"}


def run(quick: bool = False, verbose: bool = False, changes: int | None = None,
        backends: tuple[str, ...] = ("sqlite", "postgres")) -> dict[str, Any]:
    changes = changes or (2_000 if quick else 100_000)
    results: dict[str, Any] = {"changes": changes, "target_s": TARGET_S}
    cluster = None
    try:
        for backend in backends:
            url = ""
            if backend == "postgres":
                cluster, url = _postgres(cluster)
                if not url:
                    results[backend] = {"skipped": "PostgreSQL is not installed"}
                    continue
            results[backend] = _one(backend, url, changes, verbose)
    finally:
        if cluster is not None:
            cluster.stop()
    _report(results)
    return results


def _postgres(cluster: Any) -> tuple[Any, str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.cloud_support import PostgresCluster, ensure_postgres_installed

    if cluster is None:
        if ensure_postgres_installed() is None:
            print("  PostgreSQL is not installed (apt-get install postgresql): skipped")
            return None, ""
        cluster = PostgresCluster(fsync=True)
        cluster.start()
    return cluster, cluster.create_database(f"catchup{time.time_ns() % 10**12}")


def fill_backlog(data_dir: Path, changes: int) -> dict[str, Any]:
    """A migrated office data dir with ``changes`` outbox entries waiting; its ids."""
    office = seed_office(data_dir, n_queues=N_QUEUES, n_desks=1)
    t0 = time.perf_counter()
    store = open_store(data_dir)
    try:
        with store.write() as tx:
            users.create_user(tx, STAFF[0], STAFF[1], role="staff")
        outbox.install(store)  # from here on every change writes its outbox entry
        with store.read() as tx:
            made = tx.one("SELECT COUNT(*) AS n FROM outbox")["n"]
        queue_ids, desk = office["queues"], office["desks"][0]
        while made < changes:
            n = min(CHUNK, changes - made)
            with store.write() as tx:
                for i in range(n):
                    tickets.join(tx, queue_ids[i % N_QUEUES], source="kiosk")
            made += n
            n = min(CHUNK, changes - made)
            if n <= 0:
                break
            with store.write() as tx:
                for _ in range(n):
                    called = tickets.call_next(tx, desk)
                    tickets.complete(tx, called.id)
            made += n
        with store.write() as tx:  # a few waiting for the desk loop
            for i in range(20):
                tickets.join(tx, queue_ids[i % N_QUEUES], source="kiosk")
        with store.read() as tx:
            head = tx.one("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")["seq"]
            epoch = outbox.identity(tx)["epoch_id"]
            ticket_count = tx.one("SELECT COUNT(*) AS n FROM tickets")["n"]
    finally:
        store.close()
    return {**office, "head": head, "epoch_id": epoch, "tickets": ticket_count,
            "fill_s": round(time.perf_counter() - t0, 1)}


def cloud_server(data_dir: Path, database_url: str, env: dict[str, str] | None = None,
                 port: int = 0) -> ServerProcess:
    cmd = [sys.executable, "-m", "jonot_local", "cloud", "serve", "--host", "127.0.0.1",
           "--port", str(port), "--data-dir", str(data_dir)]
    if database_url:
        cmd += ["--database-url", database_url]
    return ServerProcess(cmd, data_dir.parent / f"{data_dir.name}-cloud.log", env=env)


def _cursor_reader(cloud_dir: Path, database_url: str) -> Any:
    """The cloud's store, opened in this process only to read cursors and counts."""
    from jonot_local.sync.cloud.store import PostgresCloudStore, SqliteCloudStore

    if database_url:
        return PostgresCloudStore(database_url, pool_size=1, listen=False)
    return SqliteCloudStore(cloud_dir / "cloud.sqlite3")


class Desk:
    """One desk over HTTP: call-next (timed), complete, a new join; every ``every`` s."""

    def __init__(self, base_url: str, headers: dict[str, str], desk_id: str,
                 queue_ids: list[str], every: float = DESK_EVERY_S) -> None:
        self.client = HttpClient(base_url, headers)
        self.desk_id, self.queue_ids, self.every = desk_id, queue_ids, every
        self.latencies: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._n = 0

    def start(self) -> Desk:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            status, data = self.client.request("POST", f"/api/v1/desks/{self.desk_id}/call-next")
            self.latencies.append(time.perf_counter() - t0)
            if status == 200 and data:
                self.client.request("POST", f"/api/v1/tickets/{data['id']}/complete")
            else:
                self.errors += 1
            self._n += 1
            self.client.request("POST", f"/api/v1/queues/"
                                f"{self.queue_ids[self._n % len(self.queue_ids)]}/tickets", {})
            self._stop.wait(self.every)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(10)
        self.client.close()
        return {**latency_summary(self.latencies), "calls": len(self.latencies),
                "errors": self.errors}


def _one(backend: str, database_url: str, changes: int, verbose: bool) -> dict[str, Any]:
    from jonot_local.sync.cloud.offices import add_office

    with temp_dir(f"catchup-{backend}") as tmp:
        note(f"{backend}: filling an office with {changes:,} outbox entries")
        office = fill_backlog(tmp / "office", changes)
        note(f"{backend}: {office['head']:,} entries ({office['tickets']:,} tickets) in "
             f"{office['fill_s']} s; starting the cloud and the office")
        reader = _cursor_reader(tmp / "cloud", database_url)
        office_id, token = add_office(reader, "Catch-up")
        cloud = cloud_server(tmp / "cloud", database_url).start()
        server = None
        try:
            env = {**OFFICE_ENV, "JONOT_CLOUD_URL": cloud.url, "JONOT_CLOUD_TOKEN": token}
            started = time.perf_counter()
            cloud_cpu0 = cloud.cpu_seconds()
            server = jonot_server(tmp / "office", env=env).start(timeout=60)
            ready_s = time.perf_counter() - started
            desk = Desk(server.url, bearer_headers(server.url, STAFF), office["desks"][0],
                        office["queues"]).start()
            first_ack = None
            acked = 0
            while acked < office["head"]:
                acked = _acked(reader, office_id, office["epoch_id"])
                if acked and first_ack is None:
                    first_ack = time.perf_counter() - started
                if time.perf_counter() - started > 900:
                    raise RuntimeError(f"not drained in 15 min (cloud at {acked:,})")
                time.sleep(0.05)
            drain_s = time.perf_counter() - started
            busy = desk.stop()
            office_cpu, cloud_cpu = server.cpu_seconds(), cloud.cpu_seconds() - cloud_cpu0
            _wait_backlog_empty(server.url)
            idle_desk = Desk(server.url, bearer_headers(server.url, STAFF), office["desks"][0],
                             office["queues"]).start()
            time.sleep(max(3.0, min(15.0, drain_s / 2)))
            idle = idle_desk.stop()
            _wait_backlog_empty(server.url)
            with reader.read() as tx:
                on_cloud = tx.one("SELECT COUNT(*) AS n FROM ticket WHERE office_id = ?",
                                  (office_id,))["n"]
                dead = tx.one("SELECT COUNT(*) AS n FROM dead_letter WHERE office_id = ?",
                              (office_id,))["n"]
            local = open_store(tmp / "office", read_only=True)
            try:
                with local.read() as tx:
                    in_office = tx.one("SELECT COUNT(*) AS n FROM tickets")["n"]
            finally:
                local.close()
        finally:
            if server is not None:
                server.stop()
            cloud.stop()
            reader.close()
        result = {
            "entries": office["head"], "fill_s": office["fill_s"],
            "office_ready_s": round(ready_s, 2),
            "first_ack_s": round(first_ack or 0.0, 2), "drain_s": round(drain_s, 2),
            "entries_per_s": round(office["head"] / drain_s),
            "office_cpu_s": round(office_cpu, 1), "cloud_cpu_s": round(cloud_cpu, 1),
            "call_next_busy": busy, "call_next_idle": idle,
            "tickets_office": in_office, "tickets_cloud": on_cloud, "dead_letters": dead,
            "meets_target": drain_s <= TARGET_S}
        if verbose:
            print(f"  {backend}: {result}")
        return result


def _acked(reader: Any, office_id: str, epoch_id: str) -> int:
    with reader.read() as tx:
        row = tx.one("SELECT acked_seq FROM office_epoch WHERE office_id = ? AND epoch_id = ?",
                     (office_id, epoch_id))
    return int(row["acked_seq"]) if row else 0


def _wait_backlog_empty(base_url: str, timeout: float = 60.0) -> None:
    client = HttpClient(base_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            status, data = client.request("GET", "/api/v1/health")
            if status == 200 and data and data.get("sync", {}).get("backlog") == 0:
                return
            time.sleep(0.1)
    finally:
        client.close()
    raise RuntimeError("the office's backlog did not empty")


def _report(results: dict[str, Any]) -> None:
    rows = []
    for backend in ("sqlite", "postgres"):
        r = results.get(backend)
        if not r:
            continue
        if "skipped" in r:
            rows.append([f"{backend} cloud", r["skipped"], "", ""])
            continue
        rows.append([f"{backend} cloud: {r['entries']:,} entries drained in",
                     f"{r['drain_s']} s ({r['entries_per_s']:,}/s)", f"<= {TARGET_S:.0f} s",
                     "ok" if r["meets_target"] else "MISSED"])
        rows.append(["  office up / first entry acked", f"{r['office_ready_s']} / "
                     f"{r['first_ack_s']} s", "", ""])
        rows.append(["  CPU during the drain: office / cloud",
                     f"{r['office_cpu_s']} / {r['cloud_cpu_s']} s", "", ""])
        b, i = r["call_next_busy"], r["call_next_idle"]
        rows.append(["  call-next p50 / p99 ms, during the drain",
                     f"{b['p50_ms']} / {b['p99_ms']} ({b['calls']} calls)", "", ""])
        rows.append(["  call-next p50 / p99 ms, idle", f"{i['p50_ms']} / {i['p99_ms']} "
                     f"({i['calls']} calls)", "", ""])
        rows.append(["  tickets office / cloud, dead letters",
                     f"{r['tickets_office']:,} / {r['tickets_cloud']:,}, {r['dead_letters']}",
                     "equal, 0",
                     "ok" if r["tickets_office"] == r["tickets_cloud"] and not r["dead_letters"]
                     else "MISSED"])
    print_table(f"Catch-up of {results['changes']:,} changes", ["figure", "value", "target", ""],
                rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sync_catchup",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    run(changes=args.changes, backends=backends, verbose=args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
