"""``python -m bench [PART|all] [--quick] [--minutes M] [-v]``; parts: joins, call-next,
durability, viewers, signin, one-client, reports, pages, soak.

Runs the chosen benchmarks (all by default) and prints their figures, then a
summary. The sync parts (``sync-lag``, ``sync-catchup``, ``cloud-ingest``,
``cloud-streams``, or ``sync`` for the four) run only when named: they start an
office, a cloud and a PostgreSQL cluster and take minutes at full size. So does
``instructions`` (a join's instructions counted by callgrind, about 3 minutes).
``--quick`` uses small sizes (the CI smoke run, well under 30 s without the
viewers). Exit status 1 when a part fails to run; figures that
miss a target are reported, not failed.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import sqlite3
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import (
    call_next,
    durability,
    instructions,
    joins,
    one_client,
    pages,
    reports,
    signin,
    soak,
)
from .common import cpu_busy_share, fsync_commits_per_s, print_table, temp_dir, wrk_path

PARTS = ("durability", "joins", "call-next", "viewers", "signin", "one-client", "reports",
         "pages", "soak")
BROWSER_PARTS = ("pages", "soak")  # headless Chromium: bench/pages.py, bench/soak.py
SYNC_PARTS = ("sync-lag", "sync-catchup", "cloud-ingest", "cloud-streams")
NAMED_ONLY = ("instructions",)  # run only when named: minutes under valgrind
QUIET_FSYNC_PER_S = 3000  # WAL + FULL commits/s this kind of machine does when idle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[3])
    parser.add_argument("part", nargs="?", default="all",
                        choices=(*PARTS, "all", *SYNC_PARTS, "sync", *NAMED_ONLY))
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="also print query plans and raw figures")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                        help="load client for joins (auto: wrk if installed)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    parser.add_argument("--minutes", type=float, default=None,
                        help="how long the soak keeps a display open (default 30; --quick: 1)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    machine = _machine(args.client)
    parts = PARTS if args.part == "all" else SYNC_PARTS if args.part == "sync" \
        else (args.part,)
    runners: dict[str, Callable[[], dict[str, Any] | None]] = {
        "durability": lambda: durability.run(quick=args.quick, verbose=args.verbose),
        "joins": lambda: joins.run(quick=args.quick, verbose=args.verbose, client=args.client),
        "call-next": lambda: call_next.run(quick=args.quick, verbose=args.verbose),
        "viewers": lambda: _viewers(args.quick, args.verbose),
        "signin": lambda: signin.run(quick=args.quick, verbose=args.verbose),
        "one-client": lambda: one_client.run(quick=args.quick, verbose=args.verbose),
        "reports": lambda: reports.run(quick=args.quick, verbose=args.verbose),
        "instructions": lambda: instructions.run(quick=args.quick, verbose=args.verbose),
        "sync-lag": lambda: _sync_part("sync_lag", args.quick, args.verbose),
        "sync-catchup": lambda: _sync_part("sync_catchup", args.quick, args.verbose),
        "cloud-ingest": lambda: _sync_part("cloud_ingest", args.quick, args.verbose),
        "cloud-streams": lambda: _sync_part("cloud_streams", args.quick, args.verbose),
        "pages": lambda: pages.run(quick=args.quick, verbose=args.verbose),
        "soak": lambda: soak.run(quick=args.quick, verbose=args.verbose,
                                 **({} if args.minutes is None else {"minutes": args.minutes})),
    }
    results: dict[str, Any] = {"machine": machine, "quick": args.quick}
    failed = []
    for part in parts:
        print(f"\n== {part} ==", flush=True)
        t0 = time.perf_counter()
        try:
            results[part] = runners[part]()
        except Exception:  # report and go on with the other parts
            traceback.print_exc()
            failed.append(part)
            results[part] = {"error": traceback.format_exc(limit=1).strip().splitlines()[-1]}
        print(f"  ({part}: {time.perf_counter() - t0:.1f} s)", flush=True)
    _summary(results, parts)
    print(f"\nbench: {len(parts) - len(failed)}/{len(parts)} parts ran in "
          f"{time.perf_counter() - started:.0f} s" + (f"; FAILED: {', '.join(failed)}"
                                                       if failed else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
    return 1 if failed else 0


def _machine(client: str) -> dict[str, Any]:
    """Print and return what the figures depend on, including how busy the machine is."""
    with temp_dir("probe") as tmp:
        fsync = fsync_commits_per_s(tmp)
    busy = cpu_busy_share(1.0)
    info = {"cores": os.cpu_count(), "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "wrk": bool(wrk_path()), "client": client,
            "busy_before": busy, "fsync_commits_per_s": fsync}
    load_client = "wrk" if (client == "wrk" or (client == "auto" and wrk_path())) else \
        "Python threads (apt-get install -y wrk for a lighter client)"
    print(f"machine: {info['cores']} cores, Python {info['python']}, SQLite {info['sqlite']}, "
          f"load client {load_client}")
    print(f"  before the run: CPU {'?' if busy is None else f'{busy:.0%}'} busy, disk "
          f"{fsync:,.0f} WAL+FULL commits/s")
    if (busy or 0) > 0.15 or fsync < QUIET_FSYNC_PER_S / 2:
        print("  WARNING: the machine is busy (other processes, or a slow disk): the figures "
              "below will be lower and noisier than on a quiet machine")
    return info


def _sync_part(module: str, quick: bool, verbose: bool) -> dict[str, Any]:
    """A sync part, imported only when it runs (it uses the tests' PostgreSQL helpers)."""
    import importlib

    sys.path.insert(0, os.getcwd())  # tests.cloud_support, from the repository root
    part = importlib.import_module(f"bench.{module}")
    return part.run(quick=quick, verbose=verbose)


def _viewers(quick: bool, verbose: bool) -> dict[str, Any] | None:
    """bench/viewers.py (500 SSE viewers) if it is there."""
    try:
        from . import viewers  # type: ignore[attr-defined]
    except ImportError:
        print("viewers: not available")
        return None
    accepted = inspect.signature(viewers.run).parameters
    kwargs = {k: v for k, v in (("quick", quick), ("verbose", verbose)) if k in accepted}
    return viewers.run(**kwargs)


def _summary(results: dict[str, Any], parts: tuple[str, ...]) -> None:
    rows: list[list[Any]] = []
    j = results.get("joins") or {}
    if "jonot" in j:
        rows.append(["joins/s over HTTP, 16 clients", j["jonot"]["per_s"], ">= 600",
                     _ok(j["meets_target"])])
        rows.append(["  join p50 / p99 ms", f"{j['jonot']['p50_ms']} / {j['jonot']['p99_ms']}",
                     "", ""])
        rows.append(["  bare Flask+waitress+SQLite insert/s", j["bare"]["per_s"], "(~850)", ""])
        rows.append(["  ratio to bare: staff token / anonymous",
                     f"{j['ratio_to_bare']} / {j['anonymous_ratio_to_bare']}", ">= 0.7",
                     _ok((j["ratio_to_bare"] or 0) >= 0.7)])
    ins = results.get("instructions") or {}
    if "k_instructions" in ins:
        k = ins["k_instructions"]
        rows.append(["k instructions a join / its 404 (in process)",
                     f"{k['join']} / {k['jonot_404']}", "", ""])
        rows.append(["  bare insert / its 404", f"{k['bare']} / {k['bare_404']}", "", ""])
    c = results.get("call-next") or {}
    for n, r in (c.get("sizes") or {}).items():
        rows.append([f"call-next p50 / p99 ms, {n:,} history (HTTP)",
                     f"{r['http']['p50_ms']} / {r['http']['p99_ms']}", "p99 <= 20", ""])
        rows.append(["  in process (domain, committed)",
                     f"{r['domain']['p50_ms']} / {r['domain']['p99_ms']}", "", ""])
    if "meets_target" in c:
        rows[-1][3] = _ok(c["meets_target"])
        plans = c.get("plans") or {}
        rows.append(["  history scans in query plans", len(plans.get("problems", [])), "0",
                     _ok(not plans.get("problems"))])
    d = results.get("durability") or {}
    for mode, r in (d.get("modes") or {}).items():
        rows.append([f"joins/s in process, WAL + {mode}", r["per_s"], "", ""])
    v = results.get("viewers")
    if isinstance(v, dict):
        for key, value in v.items():
            if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                rows.append([f"viewers: {key}", value, "", ""])
    elif "viewers" in parts:
        rows.append(["viewers", "not available", "", ""])
    s = results.get("signin") or {}
    for label in ("default budgets", "budgets lifted"):
        if label in s:
            r = s[label]
            rows.append([f"join p50 / p99 ms, sign-in flood ({label})",
                         f"{r['flooded']['p50_ms']} / {r['flooded']['p99_ms']} "
                         f"(idle {r['idle']['p50_ms']} / {r['idle']['p99_ms']})",
                         "p50 <= 2 x idle", _ok(r["ratio_p50"] <= signin.TARGET_RATIO)])
    if "one address" in s:
        rows.append(["  wrong passwords checked per min, one address",
                     s["one address"]["wrong_checked_per_min"], "", ""])
    o = results.get("one-client") or {}
    if "p99_ms" in o:
        rows.append(["/health p50 / p99 ms, one address idle-holding, one streaming",
                     f"{o['p50_ms']} / {o['p99_ms']}", "p99 <= 50", _ok(o["meets_target"])])
        rows.append(["  idle connections / streams one address got",
                     f"{o['idle_held']} / {o['streams_held']}", "", ""])
    r = results.get("reports") or {}
    for label, figures in (r.get("ranges") or {}).items():
        rows.append([f"reports, all figures, {label} of {r['tickets']:,} (ms)",
                     figures["all (one snapshot)"][1], "< 1000", _ok(
                         figures["all (one snapshot)"][1] < 1000)])
    for label, value in (r.get("pages") or {}).items():
        rows.append([f"  {label} (ms)", value[1], "", ""])
    p = results.get("pages") or {}
    if "display_p99_ms" in p:
        rows.append([f"call -> display DOM p50 / p99 / max ms, {p['viewers']} viewers",
                     f"{p['display_p50_ms']} / {p['display_p99_ms']} / {p['display_max_ms']}",
                     "p99 <= 100", _ok(p["display_p99_ms"] <= pages.TARGET_P99_MS)])
        rows.append(["call -> ticket page 'your turn' p50 / p99 / max ms",
                     f"{p['ticket_p50_ms']} / {p['ticket_p99_ms']} / {p['ticket_max_ms']}",
                     "p99 <= 100", _ok(p["ticket_p99_ms"] <= pages.TARGET_P99_MS)])
        rows.append(["  server RSS MiB / threads, viewers + pages",
                     f"{p['server_rss_mib']} / {p['server_threads']}", "<= 143 MiB",
                     _ok(p["server_rss_mib"] <= pages.TARGET_RSS_MIB)])
        for name, f in (p.get("first_load") or {}).items():
            rows.append([f"  first load {name}: bytes, LCP ms", f"{f['bytes']:,}, {f['lcp_ms']}",
                         "", ""])
    k = results.get("soak") or {}
    if "heap_end_kib" in k:
        rows.append([f"soak {k['minutes']:g} min: display JS heap KiB start -> end",
                     f"{k['heap_start_kib']} -> {k['heap_end_kib']}", "no growth", ""])
        rows.append(["  server RSS MiB start -> end",
                     f"{k['server_rss_start_mib']} -> {k['server_rss_end_mib']}", "no growth",
                     ""])
    if rows:
        print_table("Summary", ["figure", "value", "target", ""], rows)


def _ok(flag: Any) -> str:
    return "ok" if flag else "MISSED"


if __name__ == "__main__":
    sys.exit(main())
