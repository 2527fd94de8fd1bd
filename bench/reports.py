"""Reports at a million tickets: each report's time over ranges from one day to a year.

A fresh database gets the real schema, an office (4 queues, one desk), and a
history filled by bulk SQL (``bench/history.py``, waits and services that vary
from ticket to ticket). The office's zone is then set to Europe/Helsinki,
which rebuilds the report counts from every ticket (what a server does once
when its time zone changes): that time is printed too. Then, in this process,
each report function (``jonot_local.domain.reports``) is timed over the last
day, 7, 30 and 366 days (the largest range the page allows); and the page and
a CSV export through the Flask test client, signed in as the admin. Last, what
the report triggers cost: a ticket's whole life (join, call, complete) with and
without them.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from jonot_local.app import create_app
from jonot_local.db import Store, Tx
from jonot_local.domain import report_rollup, reports, tickets

from .common import ADMIN, note, print_table, seed_office, temp_dir
from .history import fill_history

ZONE = "Europe/Helsinki"
RANGES = (("1 day", 1), ("7 days", 7), ("30 days", 30), ("366 days", 366))
REPEATS = 5


def run(quick: bool = False, verbose: bool = False, n: int | None = None,
        lives: int | None = None) -> dict[str, Any]:
    """Fill, time every report for each range; print and return the figures (ms).
    ``lives``: tickets per run of the trigger-cost measure."""
    n = n or (20_000 if quick else 1_000_000)
    results: dict[str, Any] = {"tickets": n, "zone": ZONE}
    with temp_dir("reports") as tmp:
        data_dir = tmp / "data"
        office = seed_office(data_dir, n_queues=4, n_desks=1)
        note(f"filling {n:,} tickets of history")
        results["fill"] = fill_history(data_dir, office["queues"], office["desks"][0],
                                       office["admin_id"], n, spread=True)
        store = Store(data_dir / "jonot.sqlite3")
        try:
            t0 = time.perf_counter()
            with store.write() as tx:
                rebuilt = report_rollup.install_zone(tx, ZONE)
                rows = {t: tx.one(f"SELECT COUNT(*) AS n FROM {t}")["n"]  # noqa: S608
                        for t in report_rollup.ROLLUP_TABLES}
            results["zone_rebuild_s"] = round(time.perf_counter() - t0, 2)
            results["rollup_rows"] = rows
            assert rebuilt, "the zone was new: the counts must have been rebuilt"
            with store.read() as tx:
                newest = tx.one("SELECT MAX(day) AS d FROM report_joined")["d"]
            today = date.fromisoformat(newest)
            results["ranges"] = {label: _time_range(store, reports.last_days(today, days))
                                 for label, days in RANGES}
            if verbose:
                with store.read() as tx:
                    for r in tx.all("EXPLAIN QUERY PLAN SELECT bucket, SUM(n) FROM report_times "
                                    "WHERE day BETWEEN ? AND ? AND kind = 'wait' GROUP BY "
                                    "queue_id, bucket", reports.last_days(today, 30).keys()):
                        print("   ", tuple(r))
        finally:
            store.close()
        results["pages"] = _time_pages(data_dir, today)
    results["triggers"] = _trigger_cost(lives or (100 if quick else 1500))
    _print(results)
    return results


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """First (cold) and median of the next runs, ms."""
    t0 = time.perf_counter()
    fn()
    first = (time.perf_counter() - t0) * 1000
    runs = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1000)
    return round(first, 2), round(statistics.median(runs), 2)


def _time_range(store: Store, rng: reports.DateRange) -> dict[str, Any]:
    parts: dict[str, Callable[[Tx], Any]] = {
        "per day": lambda tx: reports.tickets_per_day(tx, rng),
        "per hour": lambda tx: reports.tickets_per_hour(tx, rng),
        "per queue": lambda tx: reports.per_queue(tx, rng),
        "per desk": lambda tx: reports.per_desk(tx, rng),
        "all (one snapshot)": lambda tx: reports.report(tx, rng),
    }
    out: dict[str, Any] = {}
    for name, fn in parts.items():
        def once(fn: Callable[[Tx], Any] = fn) -> Any:
            with store.read() as tx:
                return fn(tx)
        out[name] = _timed(once)
    with store.read() as tx:
        out["tickets"] = reports.report(tx, rng).tickets
    return out


def _time_pages(data_dir: Path, today: date) -> dict[str, Any]:
    """The report page and the queues CSV over 30 and 366 days, through Flask (ms)."""
    app = create_app({"data_dir": data_dir, "time_zone": ZONE})
    out: dict[str, Any] = {}
    try:
        client = app.test_client()
        form = client.get("/signin").get_data(as_text=True)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert csrf, "no CSRF token on the sign-in page"
        r = client.post("/signin", data={"username": ADMIN[0], "password": ADMIN[1],
                                         "csrf_token": csrf.group(1)})
        assert r.status_code == 302, r.status_code
        for label, days in (("30 days", 30), ("366 days", 366)):
            rng = reports.last_days(today, days)
            query = f"start={rng.start.isoformat()}&end={rng.end.isoformat()}"

            def page(query: str = query) -> None:
                got = client.get(f"/admin/reports?{query}")
                assert got.status_code == 200, got.status_code

            def csv(query: str = query) -> None:
                got = client.get(f"/admin/reports/queues.csv?{query}")
                assert got.status_code == 200, got.status_code

            out[f"page, {label}"] = _timed(page)
            out[f"queues.csv, {label}"] = _timed(csv)
    finally:
        rt = app.extensions["jonot"]
        rt.hub.close()
        rt.store.close()
    return out


def _trigger_cost(count: int) -> dict[str, float]:
    """Microseconds of one ticket's life (join, call, complete, committed each) with the
    report triggers and with them dropped, on a small database: wall time (mostly the
    three fsyncs) and this process's CPU time (what the triggers add). Each is run twice,
    alternating, and the lower figure kept (a shared machine is noisy)."""
    out: dict[str, float] = {}
    for label in ("without", "with report triggers") * 2:
        wall, cpu = _one_life(count, triggers=label != "without")
        out[label] = min(out.get(label, wall), wall)
        out[f"{label}, CPU"] = min(out.get(f"{label}, CPU", cpu), cpu)
    return out


def _one_life(count: int, triggers: bool) -> tuple[float, float]:
    with temp_dir("report-triggers") as tmp:
        office = seed_office(tmp / "data", n_queues=1, n_desks=1)
        store = Store(tmp / "data" / "jonot.sqlite3")
        try:
            if not triggers:
                with store.write() as tx:
                    for name in ("tr_report_joined", "tr_report_ended"):
                        tx.execute(f"DROP TRIGGER {name}")
            desk_id = office["desks"][0]
            t0, cpu0 = time.perf_counter(), time.process_time()
            for _ in range(count):
                with store.write() as tx:
                    ticket = tickets.join(tx, office["queues"][0], source="kiosk")
                with store.write() as tx:
                    tickets.call_next(tx, desk_id)
                with store.write() as tx:
                    tickets.complete(tx, ticket.id)
            return (round((time.perf_counter() - t0) / count * 1e6, 1),
                    round((time.process_time() - cpu0) / count * 1e6, 1))
        finally:
            store.close()


def _print(results: dict[str, Any]) -> None:
    fill = results["fill"]
    print(f"  history: {fill['tickets']:,} tickets filled in {fill['seconds']} s "
          f"({fill['db_mb']} MB); zone set to {results['zone']}: counts rebuilt in "
          f"{results['zone_rebuild_s']} s; rows {results['rollup_rows']}")
    rows = []
    for label, figures in results["ranges"].items():
        for name, value in figures.items():
            if name != "tickets":
                rows.append([f"{label} ({figures['tickets']:,} tickets)", name,
                             value[0], value[1]])
    for name, value in results["pages"].items():
        rows.append(["through Flask", name, value[0], value[1]])
    print_table(f"Reports at {results['tickets']:,} tickets of history (ms)",
                ["range", "report", "first", f"median of {REPEATS}"], rows)
    t = results["triggers"]
    print(f"  a ticket's life (join, call, complete): {t['with report triggers']} µs with the "
          f"report triggers, {t['without']} µs without (CPU "
          f"{t['with report triggers, CPU']} / {t['without, CPU']} µs)")
