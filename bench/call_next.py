"""Call-next latency with a long history: 10 k and 1 M finished tickets.

For each size a fresh database gets the real schema (migrations), an office
(4 queues, one desk serving them all in order), the history filled by bulk SQL
(``bench/history.py``) and 50 waiting tickets joined the normal way. Then:

* domain: in this process, ``call_next`` in a write transaction, committed
  (``synchronous=FULL``), timed; the ticket is completed and a new one joins
  so that 50 keep waiting;
* HTTP: the same loop against a real ``jonot-local serve`` on the file, timing
  ``POST /api/v1/desks/{id}/call-next`` from one keep-alive client.

On the largest database every statement that call-next, position, waiting
count, now serving and recent calls run is captured and checked with
``EXPLAIN QUERY PLAN``: a full scan of ``tickets`` or ``interactions`` (or a
sort over them) is reported, and each SELECT is timed.
"""

from __future__ import annotations

import re
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

from jonot_local.db import DB_FILENAME, Store, Tx
from jonot_local.domain import queues, status, tickets
from jonot_local.domain.model import Ticket

from .common import (
    HttpClient,
    bearer_headers,
    jonot_server,
    latency_summary,
    note,
    print_table,
    seed_office,
    temp_dir,
)
from .history import fill_history

TARGET_P99_MS = 20.0
N_QUEUES = 4
N_WAITING = 50
HISTORY_TABLES = ("tickets", "interactions")
BOUNDED_MS = 1.0  # a flagged statement faster than this on the largest history is not a scan


def run(quick: bool = False, verbose: bool = False,
        sizes: tuple[int, ...] | None = None, iterations: int | None = None) -> dict[str, Any]:
    """Measure call-next latency for each history size; print and return the figures."""
    sizes = sizes or ((10_000,) if quick else (10_000, 1_000_000))
    iterations = iterations or (50 if quick else 300)
    results: dict[str, Any] = {"iterations": iterations, "waiting": N_WAITING, "sizes": {}}
    for n in sizes:
        with temp_dir("callnext") as tmp:
            data_dir = tmp / "data"
            office = seed_office(data_dir, n_queues=N_QUEUES, n_desks=1)
            note(f"filling {n:,} tickets of history")
            fill = fill_history(data_dir, office["queues"], office["desks"][0],
                                office["admin_id"], n)
            _join_waiting(data_dir, office["queues"], N_WAITING)
            note(f"history ready in {fill['seconds']} s ({fill['db_mb']} MB); "
                 f"call-next x{iterations} in process")
            domain = _domain_loop(data_dir, office, iterations)
            if n == max(sizes):
                results["plans"] = check_plans(data_dir, office, verbose)
            note(f"call-next x{iterations} over HTTP")
            http = _http_loop(data_dir, office, iterations)
            results["sizes"][n] = {"fill": fill, "domain": domain, "http": http}
    largest = results["sizes"][max(sizes)]
    results["meets_target"] = (largest["http"]["p99_ms"] <= TARGET_P99_MS
                               and largest["domain"]["p99_ms"] <= TARGET_P99_MS)
    _report(results, verbose)
    return results


# -- set-up --------------------------------------------------------------------------------

def _open(data_dir: Path) -> Store:
    return Store(data_dir / DB_FILENAME, pool_size=2)


def _join_waiting(data_dir: Path, queue_ids: list[str], count: int) -> None:
    store = _open(data_dir)
    try:
        for i in range(count):
            with store.write() as tx:
                tickets.join(tx, queue_ids[i % len(queue_ids)], source="kiosk")
    finally:
        store.close()


# -- measurements ----------------------------------------------------------------------------

def _domain_loop(data_dir: Path, office: dict[str, Any], iterations: int) -> dict[str, Any]:
    """call_next (committed) timed in process; complete it and join one more, untimed."""
    store = _open(data_dir)
    desk, user, qids = office["desks"][0], office["admin_id"], office["queues"]
    call_s: list[float] = []
    status_s: list[float] = []
    try:
        for i in range(iterations):
            t0 = time.perf_counter()
            with store.write() as tx:
                called = tickets.call_next(tx, desk, user_id=user)
            t1 = time.perf_counter()
            with store.read() as tx:
                _display_reads(tx, qids)
            status_s.append(time.perf_counter() - t1)
            call_s.append(t1 - t0)
            with store.write() as tx:
                tickets.complete(tx, called.id, user_id=user)
            with store.write() as tx:
                tickets.join(tx, qids[i % len(qids)], source="kiosk")
    finally:
        store.close()
    return {**latency_summary(call_s), "display_p50_ms": latency_summary(status_s)["p50_ms"],
            "display_p99_ms": latency_summary(status_s)["p99_ms"]}


def _display_reads(tx: Tx, queue_ids: list[str]) -> None:
    """What a display or a ticket page reads after a call: summaries, positions, recent calls."""
    for queue in queues.list_queues(tx):
        status.queue_summary(tx, queue, 300.0)
    row = tx.one("SELECT * FROM tickets WHERE state = 'WAITING' ORDER BY order_key DESC LIMIT 1")
    if row is not None:
        status.ticket_status(tx, Ticket.from_row(row), 300.0)
    status.recent_calls(tx, queue_ids)


def _http_loop(data_dir: Path, office: dict[str, Any], iterations: int) -> dict[str, Any]:
    """The same loop over HTTP: call-next timed, then complete and a kiosk join."""
    desk, qids = office["desks"][0], office["queues"]
    latencies: list[float] = []
    errors = 0
    with jonot_server(data_dir, env={"JONOT_JOIN_LIVE_MAX": "1000000000",
                                     "JONOT_JOIN_PER_MIN": "1000000000"}) as server:
        client = HttpClient(server.url, bearer_headers(server.url))
        anonymous = HttpClient(server.url)
        try:
            for _ in range(5):  # warm up: first requests pay for imports and caches
                client.request("GET", f"/api/v1/desks/{desk}")
            for i in range(iterations):
                t0 = time.perf_counter()
                code, called = client.request("POST", f"/api/v1/desks/{desk}/call-next")
                latencies.append(time.perf_counter() - t0)
                if code != 200:
                    errors += 1
                    continue
                code, _ = client.request("POST", f"/api/v1/tickets/{called['id']}/complete")
                errors += code != 200
                code, _ = anonymous.request("POST", f"/api/v1/queues/{qids[i % len(qids)]}"
                                            "/tickets", {"source": "kiosk"})
                errors += code != 201
        finally:
            client.close()
            anonymous.close()
    return {**latency_summary(latencies), "errors": errors}


# -- query plans ------------------------------------------------------------------------------

def check_plans(data_dir: Path, office: dict[str, Any], verbose: bool = False) -> dict[str, Any]:
    """Capture the SQL of call-next and the status reads, and check how SQLite runs it.

    Returns ``{"statements": n, "problems": [...], "bounded": [...], "rows": [(what, ms,
    plan, sql)]}``. A problem is a full scan of a history table, or a sort of rows read
    from one, that takes more than ``BOUNDED_MS``; a faster one is listed as bounded.
    """
    store = _open(data_dir)
    captured: list[tuple[str, str]] = []
    label = ["?"]
    try:
        with store.connection() as conn:
            conn.set_trace_callback(lambda sql: captured.append((label[0], sql)))
            conn.execute("BEGIN IMMEDIATE")
            tx = Tx(conn)
            try:
                label[0] = "call-next"
                called = tickets.call_next(tx, office["desks"][0], user_id=office["admin_id"])
                label[0] = "called ticket status"
                status.ticket_status(tx, called, 300.0)
                label[0] = "-"
                row = tx.one("SELECT * FROM tickets WHERE state = 'WAITING' "
                             "ORDER BY order_key DESC LIMIT 1")
                label[0] = "position (waiting ticket)"
                status.ticket_status(tx, Ticket.from_row(row), 300.0)
                label[0] = "-"
                queue = queues.get_queue(tx, office["queues"][0])
                label[0] = "queue summary (waiting count, now serving)"
                status.queue_summary(tx, queue, 300.0)
                label[0] = "recent calls"
                status.recent_calls(tx, office["queues"])
                status.recent_calls(tx, None)
            finally:
                conn.set_trace_callback(None)
                conn.rollback()
        reader = sqlite3.connect(f"file:{data_dir / DB_FILENAME}?mode=ro", uri=True)
        rows, problems, bounded, seen = [], [], [], set()
        for what, sql in captured:
            sql = " ".join(sql.split())
            if what == "-" or sql in seen or not re.match(r"(?i)(SELECT|UPDATE|INSERT|DELETE|"
                                                          r"WITH)\b", sql):
                continue
            seen.add(sql)
            plan = [r[3] for r in reader.execute("EXPLAIN QUERY PLAN " + sql)]
            ms = _time_select(reader, sql) if sql.upper().startswith("SELECT") else None
            for bad in _plan_problems(sql, plan):
                # A scan in rowid order that stops at its LIMIT is cheap: judge by the clock.
                if ms is None or ms > BOUNDED_MS:
                    problems.append(f"{what}: {bad} ({ms} ms)")
                else:
                    bounded.append(f"{what}: {bad} ({ms} ms, stops at its LIMIT)")
            rows.append((what, ms, plan, sql))
        reader.close()
    finally:
        store.close()
    return {"statements": len(rows), "problems": problems, "bounded": bounded, "rows": rows}


def _plan_problems(sql: str, plan: list[str]) -> list[str]:
    """Full scans of history tables, and sorts in a statement that reads one."""
    names = set(HISTORY_TABLES)
    for table, alias in re.findall(r"(?i)\b(tickets|interactions)\s+(?:AS\s+)?(\w+)", sql):
        if alias.upper() not in {"WHERE", "SET", "ON", "JOIN", "LEFT", "ORDER", "GROUP",
                                 "LIMIT", "VALUES", "RETURNING", "INNER"}:
            names.add(alias)
    problems = []
    for step in plan:
        m = re.match(r"SCAN (\w+)", step)
        if m and m.group(1) in names:
            problems.append(f"full scan '{step}' in: {sql[:90]}")
    touches_history = any(re.search(rf"\b(SEARCH|SCAN) {n}\b", s) for s in plan for n in names)
    if touches_history and any("TEMP B-TREE" in s for s in plan):
        problems.append(f"sorts history rows in: {sql[:90]}")
    return problems


def _time_select(conn: sqlite3.Connection, sql: str, repeat: int = 9) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        conn.execute(sql).fetchall()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1000, 3)


# -- report -----------------------------------------------------------------------------------

def _report(results: dict[str, Any], verbose: bool) -> None:
    rows = []
    for n, r in results["sizes"].items():
        d, h = r["domain"], r["http"]
        rows.append([f"{n:,}", d["p50_ms"], d["p99_ms"], h["p50_ms"], h["p99_ms"], h["errors"],
                     d["display_p99_ms"], r["fill"]["seconds"], r["fill"]["db_mb"]])
    print_table(
        f"Call-next latency, {results['waiting']} waiting, {results['iterations']} calls per "
        f"size (target p99 <= {TARGET_P99_MS:g} ms at 1 M)",
        ["history", "domain p50", "domain p99", "HTTP p50", "HTTP p99", "errors",
         "display reads p99", "fill s", "DB MB"], rows)
    plans = results.get("plans")
    if plans:
        if plans["problems"]:
            print(f"  query plans: {len(plans['problems'])} problem(s):")
            for p in plans["problems"]:
                print(f"    - {p}")
        else:
            print(f"  query plans: {plans['statements']} statements of call-next, position, "
                  "waiting count, now serving and recent calls; no scan or sort of history")
        slowest = max((r for r in plans["rows"] if r[1] is not None), key=lambda r: r[1],
                      default=None)
        if slowest:
            print(f"  slowest of them at this size: {slowest[1]} ms ({slowest[0]})")
        if verbose:
            for b in plans["bounded"]:
                print(f"    bounded: {b}")
            for what, ms, plan, sql in plans["rows"]:
                print(f"    [{what}] {'' if ms is None else f'{ms} ms '}{sql}")
                for step in plan:
                    print(f"        {step}")
    verdict = "meets" if results["meets_target"] else "MISSES"
    print(f"  call-next: {verdict} the p99 <= {TARGET_P99_MS:g} ms target at the largest size")
