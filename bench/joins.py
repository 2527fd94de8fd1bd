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

A third pair of loads measures the floor of both stacks: the same clients POST
to a path neither server has (404). Jonot Local's 404 goes through its whole
stack around a view (the connection guard, 600 waitress threads with request
lookahead, Flask's request context and routing, the error handler's problem
JSON) but no view; the bare one through Flask alone. The server runs its
Python on one core, so the time between two answers (``1 / req/s``) is its
cost: a join's own work is the join's time minus the floor's, and the figures
say how much of it a ratio of 0.7 would leave.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jonot_local.db import DB_FILENAME

from .common import (
    HttpClient,
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
MISSING = "/api/v1/no-such-path"  # answered 404 by both servers
GENEROUS = {"JONOT_JOIN_LIVE_MAX": "100000000", "JONOT_JOIN_PER_MIN": "100000000"}


def run(quick: bool = False, verbose: bool = False, client: str = "auto",
        queues: int = 4, duration: float | None = None, rounds: int | None = None
        ) -> dict[str, Any]:
    """Measure joins/s of Jonot Local and of the bare endpoint; print and return the figures.

    Both servers run side by side and are loaded in turns (``rounds`` of
    ``duration / rounds`` seconds each), so a machine whose speed drifts
    weighs on both alike.
    """
    seconds = duration or (2.0 if quick else 10.0)
    rounds = rounds or (1 if quick else 5)
    slice_s = seconds / rounds
    warmup = 0.5 if quick else 1.0
    kiosk = {"source": "kiosk"}
    results: dict[str, Any] = {"clients": CLIENTS, "queues": queues, "seconds": seconds,
                               "rounds": rounds}
    with temp_dir("joins") as tmp:
        data_dir = tmp / "data"
        office = seed_office(data_dir, n_queues=queues, n_desks=1)
        paths = [f"/api/v1/queues/{q}/tickets" for q in office["queues"]]
        db_path = data_dir / DB_FILENAME
        bare_dir = tmp / "bare"
        bare_dir.mkdir()
        bare_cmd = [sys.executable, "-m", "bench.bare_app", "--port", "0",
                    "--data-dir", str(bare_dir)]
        note(f"jonot-local serve ({queues} queues) and the bare endpoint, {CLIENTS} clients, "
             f"{rounds} turns of {slice_s:g} s each")
        with jonot_server(data_dir, env=GENEROUS) as server, \
                ServerProcess(bare_cmd, tmp / "bare.log", health_path="/health") as bare:
            staff = bearer_headers(server.url)
            bare_paths = ["/tickets"]
            loads: dict[str, Callable[[float], dict[str, Any]]] = {
                "jonot": lambda t: post_load(server.url, paths, {}, t, client, CLIENTS, tmp,
                                             staff),
                "bare": lambda t: post_load(bare.url, bare_paths, {}, t, client, CLIENTS, tmp),
                "anonymous": lambda t: load_python(server.url, paths, kiosk, t, CLIENTS,
                                                   sources=SOURCES),
                "bare_python": lambda t: load_python(bare.url, bare_paths, kiosk, t, CLIENTS,
                                                     sources=SOURCES),
            }
            loads["jonot_floor"] = lambda t: post_load(server.url, [MISSING], {}, t, client,
                                                       CLIENTS, tmp, staff)
            loads["bare_floor"] = lambda t: post_load(bare.url, [MISSING], {}, t, client,
                                                      CLIENTS, tmp)
            for url in (server.url, bare.url):  # the floor loads count every answer as a 404
                probe = HttpClient(url, headers=staff)
                status, _ = probe.request("POST", MISSING, {})
                probe.close()
                if status != 404:
                    raise RuntimeError(f"{url}{MISSING} answered {status}, not 404")
            procs = {"jonot": server, "bare": bare, "anonymous": server, "bare_python": bare,
                     "jonot_floor": server, "bare_floor": bare}
            for load in loads.values():
                load(warmup)
            before, _ = _stored(db_path)
            turns: dict[str, list[tuple[dict[str, Any], float, int]]] = {k: [] for k in loads}
            for _ in range(rounds):
                for name, load in loads.items():
                    cpu0 = procs[name].cpu_seconds()
                    switches0 = procs[name].context_switches()
                    figures = load(slice_s)
                    turns[name].append((figures, procs[name].cpu_seconds() - cpu0,
                                        procs[name].context_switches() - switches0))
        after, waiting = _stored(db_path)
        for name, done in turns.items():
            results[name] = _merge(done)
        jonot, anon = results["jonot"], results["anonymous"]
        jonot["max_waiting_per_queue"] = waiting
        # Every 201 must be a ticket in the file once the server is gone.
        jonot["stored"] = after - before
        jonot["durable_ok"] = jonot["stored"] >= jonot["ok"] + anon["ok"]
        anon["durable_ok"] = jonot["durable_ok"]

    for name in ("jonot_floor", "bare_floor"):  # every answer is a 404: count them all
        floor = results[name]
        floor["errors"] -= floor["requests"]  # what failed beyond the answered 404s
        floor["per_s"] = round(floor["requests"] / floor["seconds"], 1) if floor["seconds"] else 0.0
    results["cost_ms"] = _costs(results)
    results["ratio_to_bare"] = _ratio(jonot, results["bare"])
    results["anonymous_ratio_to_bare"] = _ratio(anon, results["bare_python"])
    results["ratio_per_round"] = [
        round(j[0]["per_s"] / b[0]["per_s"], 2) if b[0]["per_s"] else None
        for j, b in zip(turns["jonot"], turns["bare"])]
    results["meets_target"] = jonot["per_s"] >= TARGET_PER_S
    _report(results, verbose)
    return results


def _merge(turns: list[tuple[dict[str, Any], float, int]]) -> dict[str, Any]:
    """One set of figures from several turns: totals, rates over the summed time, worst p99."""
    figures = [f for f, _, _ in turns]
    requests = sum(f["requests"] for f in figures)
    ok = sum(f["ok"] for f in figures)
    seconds = sum(f["seconds"] for f in figures)
    return {"client": figures[0]["client"], "requests": requests, "ok": ok,
            "errors": sum(f["errors"] for f in figures), "seconds": round(seconds, 2),
            "per_s": round(ok / seconds, 1) if seconds else 0.0,
            "p50_ms": round(sorted(f["p50_ms"] for f in figures)[len(figures) // 2], 2),
            "p99_ms": max(f["p99_ms"] for f in figures),
            "max_ms": max(f["max_ms"] for f in figures),
            "server_cpu_per_req_ms": round(sum(c for _, c, _ in turns) * 1000 / max(1, requests),
                                           2),
            "server_switches_per_req": round(sum(w for _, _, w in turns) / max(1, requests), 1)}


def _costs(results: dict[str, Any]) -> dict[str, float] | None:
    """Milliseconds of the server's core per answer: each load's, its own work above its
    stack's floor (404), and the join's own work a ratio of ``TARGET_RATIO`` would allow."""
    rates = {k: results[k]["per_s"] for k in ("jonot", "bare", "jonot_floor", "bare_floor")}
    if not all(rates.values()):
        return None
    ms = {k: 1000 / v for k, v in rates.items()}
    return {"join": round(ms["jonot"], 3), "bare": round(ms["bare"], 3),
            "jonot_floor": round(ms["jonot_floor"], 3), "bare_floor": round(ms["bare_floor"], 3),
            "join_own": round(ms["jonot"] - ms["jonot_floor"], 3),
            "bare_own": round(ms["bare"] - ms["bare_floor"], 3),
            "join_own_for_target": round(ms["bare"] / TARGET_RATIO - ms["jonot_floor"], 3)}


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
                f["server_cpu_per_req_ms"], f["server_switches_per_req"], f["client"]]

    print_table(
        f"Joins over HTTP: {results['clients']} clients, {results['seconds']:g} s, "
        f"{results['queues']} queues (target >= {TARGET_PER_S}/s, "
        f">= {TARGET_RATIO:.0%} of bare)",
        ["endpoint", "req/s", "p50 ms", "p99 ms", "errors", "server CPU ms/req",
         "switches/req", "client"],
        [row("jonot-local join, staff token (FULL)", j),
         row("bare Flask insert (FULL)", b),
         row("jonot-local join, anonymous x16 addr", a),
         row("bare Flask insert (FULL)", bp),
         row("jonot-local 404, staff token (floor)", results["jonot_floor"]),
         row("bare Flask 404 (floor)", results["bare_floor"])])
    verdict = "meets" if results["meets_target"] else "BELOW"
    print(f"  jonot-local staff joins: {verdict} the {TARGET_PER_S}/s target; "
          f"{results['ratio_to_bare']:.0%} of the bare endpoint; anonymous joins "
          f"{results['anonymous_ratio_to_bare']:.0%} of it (same client); "
          f"{j['stored']:,} tickets stored for {j['ok'] + a['ok']:,} acknowledged "
          f"({'none lost' if j['durable_ok'] else 'SOME LOST'}); "
          f"backlog at the end {j['max_waiting_per_queue']:,} waiting in the fullest queue")
    print(f"  ratio to bare per turn: {results['ratio_per_round']}")
    cost = results["cost_ms"]
    if cost is not None:
        print(f"  ms of the server's core per answer: join {cost['join']:.3f} = floor "
              f"{cost['jonot_floor']:.3f} + own work {cost['join_own']:.3f}; bare insert "
              f"{cost['bare']:.3f} = floor {cost['bare_floor']:.3f} + {cost['bare_own']:.3f}; "
              f"{TARGET_RATIO:.0%} of bare needs the join's own work at "
              f"{cost['join_own_for_target']:.3f} or less")
    if verbose:
        print(f"  raw: {results}")
