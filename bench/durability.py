"""What ``synchronous=FULL`` costs: the real join path in process, FULL vs NORMAL, in WAL.

Jonot Local runs SQLite in WAL mode with ``synchronous=FULL``: every commit
syncs the WAL, so an acknowledged ticket survives a power cut. ``NORMAL``
syncs only at checkpoints and may lose the last commits. Here the same
number of joins (``Store.write`` + ``tickets.issue``, which also reads the
ticket's position and queue, then its status made from those, as the API
does) runs from one thread on a fresh database with each setting, the
``synchronous`` pragma being changed on the store's one pooled connection.
A bare one-row insert per commit is measured alongside, for the disk's raw rate.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from jonot_local.db import DB_FILENAME, Store
from jonot_local.domain import status, tickets

from .common import latency_summary, note, print_table, raw_commits_per_s, seed_office, temp_dir

MODES = ("FULL", "NORMAL")


def run(quick: bool = False, verbose: bool = False, joins: int | None = None) -> dict[str, Any]:
    """Join rate and commit latency under FULL and NORMAL; print and return the figures."""
    count = joins or (400 if quick else 4000)
    results: dict[str, Any] = {"joins": count, "modes": {}}
    with temp_dir("durability") as tmp:
        for mode in MODES:
            note(f"{count:,} joins with synchronous={mode}")
            data_dir = tmp / mode.lower()
            office = seed_office(data_dir, n_queues=4)
            results["modes"][mode] = {
                **_join_loop(data_dir / DB_FILENAME, office["queues"], mode, count),
                "raw_commits_per_s": raw_commits_per_s(tmp / f"raw-{mode}.sqlite3", mode, count),
            }
    full, normal = results["modes"]["FULL"], results["modes"]["NORMAL"]
    results["full_share_of_normal"] = round(full["per_s"] / normal["per_s"], 2)
    _report(results, verbose)
    return results


def _join_loop(db_path: Path, queue_ids: list[str], mode: str, count: int) -> dict[str, Any]:
    store = Store(db_path, pool_size=1)
    try:
        with store.connection() as conn:
            conn.execute(f"PRAGMA synchronous = {mode}")
            level = conn.execute("PRAGMA synchronous").fetchone()[0]
            journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if level != {"FULL": 2, "NORMAL": 1}[mode] or journal != "wal":
            raise RuntimeError(f"could not set synchronous={mode} in WAL ({level}, {journal})")
        latencies = []
        began = time.perf_counter()
        for i in range(count):
            t0 = time.perf_counter()
            with store.write() as tx:
                joined = tickets.issue(tx, queue_ids[i % len(queue_ids)], source="kiosk")
            status.status_of(joined.queue, joined.position, joined.desks, joined.now_serving,
                             300.0)
            latencies.append(time.perf_counter() - t0)
        seconds = time.perf_counter() - began
    finally:
        store.close()
    return {"per_s": round(count / seconds, 1), **latency_summary(latencies)}


def _report(results: dict[str, Any], verbose: bool) -> None:
    rows = [[f"WAL + {mode}", r["per_s"], r["p50_ms"], r["p99_ms"], r["raw_commits_per_s"]]
            for mode, r in results["modes"].items()]
    print_table(f"Durability cost: {results['joins']:,} joins in process, one thread",
                ["setting", "joins/s", "p50 ms", "p99 ms", "bare commits/s"], rows)
    full = results["modes"]["FULL"]
    print(f"  FULL keeps every acknowledged ticket across a power cut; it runs the join path "
          f"at {results['full_share_of_normal']:.0%} of NORMAL's rate "
          f"({full['per_s']:,.0f}/s, p99 {full['p99_ms']} ms), far above a clinic's needs")
    if verbose:
        print(f"  raw: {results}")
