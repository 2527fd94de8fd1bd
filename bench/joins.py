"""Durable joins per second over HTTP, against a real server, with a bare yardstick.

16 keep-alive clients ``POST /api/v1/queues/{id}/tickets`` (round-robin over
the office's queues) to ``jonot-local serve`` running in a subprocess on a
fresh data dir, in two ways:

- **staff**: with a staff bearer token, as outside tools load-test the API
  (the main figure, ``jonot``); the join budget does not apply to them.
- **anonymous**: kiosk joins without a token from 16 source addresses
  (``127.1.0.x``), so every join goes through the join budget (set generous
  here, so it counts but never refuses).

Every 201 is a ticket committed with ``synchronous=FULL``; the database is
checked to hold at least as many tickets as were acknowledged. The same
clients then load a bare Flask + waitress + SQLite insert endpoint
(``bench/bare_app.py``) in the same run; the ratios to it are the figures that
compare across runs on a machine whose speed varies.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

from jonot_local.db import DB_FILENAME

from .common import (
    ServerProcess,
    bearer_headers,
    jonot_server,
    load_python,
    note,
    post_load,
    print_table,
    seed_office,
    temp_dir,
)

TARGET_PER_S = 600
TARGET_RATIO = 0.7
CLIENTS = 16
SOURCES = [f"127.1.0.{i + 1}" for i in range(CLIENTS)]
GENEROUS = {"JONOT_JOIN_LIVE_MAX": "100000000", "JONOT_JOIN_PER_MIN": "100000000"}


def run(quick: bool = False, verbose: bool = False, client: str = "auto",
        queues: int = 4, duration: float | None = None) -> dict[str, Any]:
    """Measure joins/s of Jonot Local and of the bare endpoint; print and return the figures."""
    seconds = duration or (2.0 if quick else 10.0)
    warmup = 0.5 if quick else 1.0
    results: dict[str, Any] = {"clients": CLIENTS, "queues": queues, "seconds": seconds}
    with temp_dir("joins") as tmp:
        data_dir = tmp / "data"
        office = seed_office(data_dir, n_queues=queues, n_desks=1)
        paths = [f"/api/v1/queues/{q}/tickets" for q in office["queues"]]
        db_path = data_dir / DB_FILENAME
        note(f"jonot-local serve, {queues} queues, {CLIENTS} clients, {seconds:g} s each")
        with jonot_server(data_dir, env=GENEROUS) as server:
            staff = bearer_headers(server.url)
            post_load(server.url, paths, {}, warmup, client, CLIENTS, tmp, staff)
            before, _ = _stored(db_path)
            cpu0 = server.cpu_seconds()
            jonot = post_load(server.url, paths, {}, seconds, client, CLIENTS, tmp, staff)
            jonot["server_cpu_per_req_ms"] = _cpu_ms(server, cpu0, jonot)
            between, _ = _stored(db_path)
            jonot["stored"] = between - before
            jonot["durable_ok"] = jonot["stored"] >= jonot["ok"]

            note("anonymous kiosk joins from 16 addresses (Python client)")
            kiosk = {"source": "kiosk"}
            load_python(server.url, paths, kiosk, warmup, CLIENTS, sources=SOURCES)
            between, _ = _stored(db_path)
            cpu0 = server.cpu_seconds()
            anon = load_python(server.url, paths, kiosk, seconds, CLIENTS, sources=SOURCES)
            anon["server_cpu_per_req_ms"] = _cpu_ms(server, cpu0, anon)
        after, jonot["max_waiting_per_queue"] = _stored(db_path)
        anon["stored"] = after - between
        anon["durable_ok"] = anon["stored"] >= anon["ok"]
        results["jonot"], results["anonymous"] = jonot, anon

        note("bare Flask + waitress + SQLite FULL insert endpoint, same clients")
        bare_dir = tmp / "bare"
        bare_cmd = [sys.executable, "-m", "bench.bare_app", "--port", "0",
                    "--data-dir", str(bare_dir)]
        bare_dir.mkdir()
        with ServerProcess(bare_cmd, tmp / "bare.log", health_path="/health") as bare:
            bare_paths = ["/tickets"]
            post_load(bare.url, bare_paths, {}, warmup, client, CLIENTS, tmp)
            cpu0 = bare.cpu_seconds()
            yard = post_load(bare.url, bare_paths, {}, seconds, client, CLIENTS, tmp)
            yard["server_cpu_per_req_ms"] = _cpu_ms(bare, cpu0, yard)
            cpu0 = bare.cpu_seconds()
            yard_py = load_python(bare.url, bare_paths, kiosk, seconds, CLIENTS, sources=SOURCES)
            yard_py["server_cpu_per_req_ms"] = _cpu_ms(bare, cpu0, yard_py)
        results["bare"], results["bare_python"] = yard, yard_py

    results["ratio_to_bare"] = _ratio(jonot, yard)
    results["anonymous_ratio_to_bare"] = _ratio(anon, yard_py)
    results["meets_target"] = jonot["per_s"] >= TARGET_PER_S
    _report(results, verbose)
    return results


def _cpu_ms(server: ServerProcess, cpu0: float, figures: dict[str, Any]) -> float:
    return round((server.cpu_seconds() - cpu0) * 1000 / max(1, figures["requests"]), 2)


def _ratio(mine: dict[str, Any], bare: dict[str, Any]) -> float | None:
    return round(mine["per_s"] / bare["per_s"], 2) if bare["per_s"] else None


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
    j, a = results["jonot"], results["anonymous"]
    b, bp = results["bare"], results["bare_python"]

    def row(name: str, f: dict[str, Any]) -> list[Any]:
        return [name, f["per_s"], f["p50_ms"], f["p99_ms"], f["errors"],
                f["server_cpu_per_req_ms"], f["client"]]

    print_table(
        f"Joins over HTTP: {results['clients']} clients, {results['seconds']:g} s, "
        f"{results['queues']} queues (target >= {TARGET_PER_S}/s, "
        f">= {TARGET_RATIO:.0%} of bare)",
        ["endpoint", "req/s", "p50 ms", "p99 ms", "errors", "server CPU ms/req", "client"],
        [row("jonot-local join, staff token (FULL)", j),
         row("bare Flask insert (FULL)", b),
         row("jonot-local join, anonymous x16 addr", a),
         row("bare Flask insert (FULL)", bp)])
    verdict = "meets" if results["meets_target"] else "BELOW"
    print(f"  jonot-local staff joins: {verdict} the {TARGET_PER_S}/s target; "
          f"{results['ratio_to_bare']:.0%} of the bare endpoint; anonymous joins "
          f"{results['anonymous_ratio_to_bare']:.0%} of it (same client); "
          f"{j['stored'] + a['stored']:,} tickets stored for {j['ok'] + a['ok']:,} acknowledged "
          f"({'none lost' if j['durable_ok'] and a['durable_ok'] else 'SOME LOST'}); "
          f"backlog at the end {j['max_waiting_per_queue']:,} waiting in the fullest queue")
    if verbose:
        print(f"  raw: {results}")
