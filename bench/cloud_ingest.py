"""``python -m bench.cloud_ingest [--entries N] [--postgres]``: cloud ingest rate, look-ups.

Starts ``jonot-local cloud serve`` on loopback (SQLite; with ``--postgres`` also
on a throw-away PostgreSQL cluster), pushes N new ticket entries in full
batches (``MAX_BATCH``) as one office would while catching up, then as many
updates of those tickets, and reports entries/s; then times ``GET
/api/v1/tickets/by-hash/{hash}`` from 4 client threads (p50/p99).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
from jonot_local.sync import protocol
from jonot_local.sync.cloud.offices import add_office
from jonot_local.sync.cloud.store import open_cloud_store

from jonot_local.ids import new_ticket_hash
from tests.cloud_support import (
    CloudProcess,
    FakeOffice,
    PostgresCluster,
    ensure_postgres_installed,
)


def run(quick: bool = False, verbose: bool = False, entries: int | None = None,
        backends: tuple[str, ...] = ("sqlite", "postgres")) -> dict[str, Any]:
    """``python -m bench cloud-ingest``: both stores (PostgreSQL with fsync on)."""
    from .sync_catchup import _postgres

    entries = entries or (1_000 if quick else 20_000)
    lookups = min(entries, 200 if quick else 2_000)
    results: dict[str, Any] = {"entries": entries}
    cluster = None
    try:
        for backend in backends:
            url = ""
            if backend == "postgres":
                cluster, url = _postgres(cluster)
                if not url:
                    continue
            from .common import temp_dir

            with temp_dir("ingest") as tmp:
                row = measure("SQLite" if backend == "sqlite" else "PostgreSQL", tmp, url,
                              entries, lookups)
            results[backend] = row
            print("  " + "  ".join(f"{k}: {v}" for k, v in row.items()))
    finally:
        if cluster is not None:
            cluster.stop()
    return results


def measure(label: str, data_dir: Path, url: str, entries: int, lookups: int) -> dict[str, Any]:
    store = open_cloud_store(data_dir, url)
    office_id, token = add_office(store, "Bench")
    store.close()
    proc = CloudProcess(data_dir, url, env={"JONOT_HASH_LOOKUP_PER_MIN": "1000000",
                                            "JONOT_HASH_MISS_PER_MIN": "1000000"}).start()
    try:
        office = FakeOffice(proc.url, token, office_id)
        queue_id, q = office.queue()
        office.push([q])
        hashes = [new_ticket_hash() for _ in range(entries)]
        created = [office.ticket(queue_id, i + 1, ticket_hash=h) for i, h in enumerate(hashes)]
        batch = protocol.MAX_BATCH
        t0 = time.perf_counter()
        for i in range(0, entries, batch):
            office.push([e for _, e in created[i:i + batch]])
        insert_s = time.perf_counter() - t0
        updates = [office.ticket(queue_id, i + 1, state="CALLED", version=2, ticket_id=tid)[1]
                   for i, (tid, _) in enumerate(created)]
        t0 = time.perf_counter()
        for i in range(0, entries, batch):
            answer = office.push(updates[i:i + batch])
        update_s = time.perf_counter() - t0
        assert answer["acked_seq"] == 1 + 2 * entries, answer
        times: list[float] = []
        lock = threading.Lock()

        def client(part: list[str]) -> None:
            s = requests.Session()
            mine = []
            for h in part:
                t = time.perf_counter()
                r = s.get(f"{proc.url}/api/v1/tickets/by-hash/{h}", timeout=10)
                mine.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
            with lock:
                times.extend(mine)

        picked = hashes[:lookups]
        threads = [threading.Thread(target=client, args=(picked[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        times.sort()
        return {"store": label, "new entries/s": round(entries / insert_s),
                "updates/s": round(entries / update_s),
                "lookup p50 ms": round(statistics.median(times) * 1000, 1),
                "lookup p99 ms": round(times[int(len(times) * 0.99) - 1] * 1000, 1)}
    finally:
        proc.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cloud_ingest")
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=2_000)
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    args = parser.parse_args(argv)
    rows = [measure("SQLite", Path(tempfile.mkdtemp(prefix="cloud-bench-")), "", args.entries,
                min(args.lookups, args.entries))]
    if args.postgres:
        if ensure_postgres_installed() is None:
            print("PostgreSQL is not installed; skipped")
        else:
            cluster = PostgresCluster()
            try:
                url = cluster.start()
                rows.append(measure("PostgreSQL", Path(tempfile.mkdtemp(prefix="cloud-bench-")),
                                url, args.entries, min(args.lookups, args.entries)))
            finally:
                cluster.stop()
    for row in rows:
        print("  ".join(f"{k}: {v}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
