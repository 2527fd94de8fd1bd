"""A display left open under a call every 5 s: does anything grow?

``jonot-local serve`` on a fresh data dir (one queue, one desk, a ticket joined
before each call), a real ``/display`` in headless Chromium with its sound on
(so every call plays the chime and, as headless Chromium has no voices, the
audio the server makes with espeak-ng when it is installed). Every 5 s: a join,
call-next, and the previous call completed. At the start (after the first
calls) and then every ``sample_s`` the page's JS heap after a forced garbage
collection, its DOM nodes and listeners (Chrome DevTools Protocol), and the
server's RSS, threads and open fds are taken; the end is compared with the
start.

Run: ``python -m bench soak [--minutes 30]`` (``--quick``: 1 minute) or
``python -m bench.soak --minutes 30``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from . import browser as br
from .common import (
    HttpClient,
    bearer_headers,
    jonot_server,
    note,
    print_table,
    seed_office,
    temp_dir,
)
from .viewers import server_resources

CALL_EVERY_S = 5.0


def run(quick: bool = False, verbose: bool = False, minutes: float | None = None,
        call_every_s: float = CALL_EVERY_S) -> dict[str, Any]:
    """Keep a display open ``minutes`` (default 30, ``quick`` 1) under a call every 5 s."""
    why = br.available()
    if why:
        print(f"soak: not available ({why})")
        return {"error": why}
    minutes = minutes if minutes is not None else (1.0 if quick else 30.0)
    duration = minutes * 60
    sample_s = max(10.0, min(60.0, duration / 10))
    results: dict[str, Any] = {"minutes": minutes, "call_every_s": call_every_s}
    samples: list[dict[str, Any]] = []
    with temp_dir("soak") as tmp:
        data_dir = tmp / "data"
        office = seed_office(data_dir, n_queues=1, n_desks=1)
        with jonot_server(data_dir) as server:
            assert server.proc is not None
            pid = server.proc.pid
            staff = HttpClient(server.url, bearer_headers(server.url))
            queue_path = f"/api/v1/queues/{office['queues'][0]}/tickets"
            call_path = f"/api/v1/desks/{office['desks'][0]}/call-next"
            errors: list[str] = []
            state = {"calls": 0, "previous": None}

            def call() -> None:
                status, _ = staff.request("POST", queue_path, {})
                status, body = staff.request("POST", call_path)
                if status != 200:
                    raise RuntimeError(f"call-next answered {status} {body}")
                if state["previous"]:
                    staff.request("POST", f"/api/v1/tickets/{state['previous']}/complete")
                state["previous"] = body["id"]
                state["calls"] += 1

            with br.chromium() as browser:
                context = br.new_context(browser, server.url, sound=True)
                try:
                    page = context.new_page()
                    page.on("pageerror", lambda e: errors.append(str(e)))
                    page.goto(server.url + "/display")
                    page.wait_for_selector("html[data-stream=live]", timeout=15_000)
                    for _ in range(2):  # the first calls load the chime, the audio path
                        call()
                        page.wait_for_timeout(call_every_s * 1000)

                    def sample() -> dict[str, Any]:
                        taken = {"t_s": round(time.monotonic() - started, 1),
                                 "calls": state["calls"], **br.js_memory(page),
                                 "server": server_resources(pid)}
                        announced = page.evaluate(
                            "window.__jonotAnnouncements.slice(-1).map(e => e.state)")
                        taken["last_announcement"] = announced[0] if announced else None
                        samples.append(taken)
                        return taken

                    started = time.monotonic()
                    note(f"display open {minutes:g} min, a call every {call_every_s:g} s")
                    sample()
                    next_call = time.monotonic()
                    next_sample = started + sample_s
                    while time.monotonic() - started < duration:
                        now = time.monotonic()
                        if now >= next_call:
                            call()
                            next_call += call_every_s
                        if now >= next_sample:
                            sample()
                            next_sample += sample_s
                        page.wait_for_timeout(max(0.05, min(next_call, next_sample)
                                                  - time.monotonic()) * 1000)
                    page.wait_for_timeout(3000)  # the last announcement ends
                    sample()
                    results["log"] = page.evaluate("window.__jonotAnnouncements.length")
                finally:
                    context.close()
            staff.close()
            if server.proc.poll() is not None:
                raise RuntimeError("the server died:\n" + server.log_path.read_text()[-2000:])
    start, end = samples[0], samples[-1]
    results.update({
        "samples": samples, "calls": state["calls"], "page_errors": errors,
        "start": start, "end": end,
        "heap_start_kib": start["heap_used_kib"], "heap_end_kib": end["heap_used_kib"],
        "heap_max_kib": max(s["heap_used_kib"] for s in samples),
        "dom_nodes_start": start["dom_nodes"], "dom_nodes_end": end["dom_nodes"],
        "server_rss_start_mib": start["server"]["rss_mib"],
        "server_rss_end_mib": end["server"]["rss_mib"],
    })
    _report(results, verbose)
    return results


def _report(results: dict[str, Any], verbose: bool) -> None:
    s, e = results["start"], results["end"]
    print_table(
        f"A display open {results['minutes']:g} min, a call every "
        f"{results['call_every_s']:g} s ({results['calls']} calls)",
        ["figure", "start", "end", "max"],
        [["display JS heap KiB (after GC)", s["heap_used_kib"], e["heap_used_kib"],
          results["heap_max_kib"]],
         ["display DOM nodes", s["dom_nodes"], e["dom_nodes"],
          max(x["dom_nodes"] for x in results["samples"])],
         ["display event listeners", s["listeners"], e["listeners"],
          max(x["listeners"] for x in results["samples"])],
         ["server RSS MiB", s["server"]["rss_mib"], e["server"]["rss_mib"],
          max(x["server"]["rss_mib"] for x in results["samples"])],
         ["server threads", s["server"]["threads"], e["server"]["threads"],
          max(x["server"]["threads"] for x in results["samples"])],
         ["server open fds", s["server"]["fds"], e["server"]["fds"],
          max(x["server"]["fds"] for x in results["samples"])]])
    print(f"  last announcement: {e['last_announcement']}; page errors: "
          f"{len(results['page_errors'])}")
    if verbose:
        for x in results["samples"]:
            print(f"  t={x['t_s']} s calls={x['calls']} heap={x['heap_used_kib']} KiB "
                  f"nodes={x['dom_nodes']} rss={x['server']['rss_mib']} MiB")
        print(f"  raw: {json.dumps(results, default=str)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=None, help="default 30 (quick: 1)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    run(quick=args.quick, verbose=args.verbose, minutes=args.minutes)


if __name__ == "__main__":
    main()
