"""Durable joins per second over HTTP, against a real server, with a bare yardstick.

16 keep-alive clients ``POST /api/v1/queues/{id}/tickets`` (anonymous kiosk
joins, round-robin over the office's queues) to ``jonot-local serve`` running
in a subprocess on a fresh data dir. Every 201 is a ticket committed with
``synchronous=FULL``; afterwards the database is checked to hold at least as
many tickets as were acknowledged. The same client then loads a bare Flask +
waitress + SQLite insert endpoint (``bench/bare_app.py``) for scale.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

from jonot_local.db import DB_FILENAME

from .common import (
    ServerProcess,
    jonot_server,
    note,
    post_load,
    print_table,
    seed_office,
    temp_dir,
)

TARGET_PER_S = 600
CLIENTS = 16


def run(quick: bool = False, verbose: bool = False, client: str = "auto",
        queues: int = 4, duration: float | None = None) -> dict[str, Any]:
    """Measure joins/s of Jonot Local and of the bare endpoint; print and return the figures."""
    seconds = duration or (2.0 if quick else 10.0)
    warmup = 0.5 if quick else 1.0
    body = {"source": "kiosk"}
    results: dict[str, Any] = {"clients": CLIENTS, "queues": queues, "seconds": seconds}
    with temp_dir("joins") as tmp:
        data_dir = tmp / "data"
        office = seed_office(data_dir, n_queues=queues, n_desks=1)
        paths = [f"/api/v1/queues/{q}/tickets" for q in office["queues"]]
        note(f"jonot-local serve, {queues} queues, {CLIENTS} clients, {seconds:g} s")
        with jonot_server(data_dir) as server:
            post_load(server.url, paths, body, warmup, client, CLIENTS, tmp)
            before, _ = _stored(data_dir / DB_FILENAME)
            cpu0 = server.cpu_seconds()
            jonot = post_load(server.url, paths, body, seconds, client, CLIENTS, tmp)
            jonot["server_cpu_per_req_ms"] = round(
                (server.cpu_seconds() - cpu0) * 1000 / max(1, jonot["requests"]), 2)
        after, jonot["max_waiting_per_queue"] = _stored(data_dir / DB_FILENAME)
        # Every 201 of the measured run must be a ticket in the file once the server is gone.
        jonot["stored"] = after - before
        jonot["durable_ok"] = jonot["stored"] >= jonot["ok"]
        results["jonot"] = jonot

        note("bare Flask + waitress + SQLite FULL insert endpoint, same client")
        bare_dir = tmp / "bare"
        bare_cmd = [sys.executable, "-m", "bench.bare_app", "--port", "0",
                    "--data-dir", str(bare_dir)]
        bare_dir.mkdir()
        with ServerProcess(bare_cmd, tmp / "bare.log", health_path="/health") as bare:
            bare_paths = ["/tickets"]
            post_load(bare.url, bare_paths, body, warmup, client, CLIENTS, tmp)
            cpu0 = bare.cpu_seconds()
            yard = post_load(bare.url, bare_paths, body, seconds, client, CLIENTS, tmp)
            yard["server_cpu_per_req_ms"] = round(
                (bare.cpu_seconds() - cpu0) * 1000 / max(1, yard["requests"]), 2)
        results["bare"] = yard

    results["ratio_to_bare"] = round(jonot["per_s"] / yard["per_s"], 2) if yard["per_s"] else None
    results["meets_target"] = jonot["per_s"] >= TARGET_PER_S
    _report(results, verbose)
    return results


def _stored(db_path: Path) -> tuple[int, int]:
    """(tickets in the database, largest number of waiting tickets in one queue)."""
    conn = sqlite3.connect(db_path)
    try:
        total = conn.execute("SELECT COUNT(*) FROM tickets").fetchone()[0]
        waiting = conn.execute("SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n "
                               "FROM tickets WHERE state = 'WAITING' GROUP BY queue_id)"
                               ).fetchone()[0]
    finally:
        conn.close()
    return total, waiting


def _report(results: dict[str, Any], verbose: bool) -> None:
    j, b = results["jonot"], results["bare"]
    rows = [
        ["jonot-local join (FULL)", j["per_s"], j["p50_ms"], j["p99_ms"], j["errors"],
         j["server_cpu_per_req_ms"], j["client"]],
        ["bare Flask insert (FULL)", b["per_s"], b["p50_ms"], b["p99_ms"], b["errors"],
         b["server_cpu_per_req_ms"], b["client"]],
    ]
    print_table(
        f"Joins over HTTP: {results['clients']} clients, {results['seconds']:g} s, "
        f"{results['queues']} queues (target >= {TARGET_PER_S}/s)",
        ["endpoint", "req/s", "p50 ms", "p99 ms", "errors", "server CPU ms/req", "client"],
        rows)
    verdict = "meets" if results["meets_target"] else "BELOW"
    print(f"  jonot-local: {verdict} the {TARGET_PER_S}/s target; "
          f"{results['ratio_to_bare']:.0%} of the bare endpoint; "
          f"{j['stored']:,} tickets stored for {j['ok']:,} acknowledged "
          f"({'none lost' if j['durable_ok'] else 'SOME LOST'}); "
          f"backlog at the end {j['max_waiting_per_queue']:,} waiting in the fullest queue")
    if verbose:
        print(f"  raw: {results}")
