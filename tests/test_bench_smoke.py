"""The benchmark command runs end to end at small sizes and prints its figures.

Speed itself is not asserted here (that is what ``python -m bench`` reports);
this checks that every part runs, prints its table and returns sane figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIME_BOUND_S = 120  # 14.7 s at load 9 on 2 cores, where --quick alone took 28.6 s
HISTORY = 2_000     # call-next history size of the smoke run

# ``python -m bench all --quick`` with smaller counts still: the parts' own size
# parameters, bound before the command line runs (the figures mean nothing at these
# sizes; every part, the summary and the JSON figures are exercised all the same).
SMOKE = f"""
import functools, sys
import bench.__main__ as cli
from bench import call_next, durability, joins, one_client, reports, signin, viewers
from bench.__main__ import BROWSER_PARTS
durability.run = functools.partial(durability.run, joins=60)
joins.run = functools.partial(joins.run, queues=2, duration=0.4)
call_next.run = functools.partial(call_next.run, sizes=({HISTORY},), iterations=10)
viewers.run = functools.partial(viewers.run, viewers=8, rounds=1)
signin.run = functools.partial(signin.run, flood_s=0.5, alone_s=0.5,
                               configs=("default budgets",))
one_client.run = functools.partial(one_client.run, idle=12, streams=8)
reports.run = functools.partial(reports.run, n=3000, lives=10)
cli.PARTS = tuple(p for p in cli.PARTS if p not in BROWSER_PARTS)  # their own smoke below
cli.cpu_busy_share = lambda seconds=1.0, _f=cli.cpu_busy_share: _f(0.05)
cli.fsync_commits_per_s = functools.partial(cli.fsync_commits_per_s, count=20)
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_quick_bench_prints_figures_and_exits_0(tmp_path: Path) -> None:
    figures_file = tmp_path / "figures.json"
    started = time.monotonic()
    proc = subprocess.run(
        # the Python load client: wrk rounds a run up to whole seconds
        [sys.executable, "-c", SMOKE, "all", "--quick", "--client", "python", "--json",
         str(figures_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=TIME_BOUND_S)
    elapsed = time.monotonic() - started
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert elapsed < TIME_BOUND_S
    for title in ("Durability cost", "Joins over HTTP", "Call-next latency", "Summary",
                  "sign-in flood", "one address", "Reports at 3,000 tickets"):
        assert title in out, f"{title!r} missing from:\n{out[-3000:]}"
    assert "viewers" in out
    assert "FAILED" not in out

    figures = json.loads(figures_file.read_text())
    joins = figures["joins"]["jonot"]
    assert joins["ok"] > 0 and joins["per_s"] > 0 and joins["errors"] == 0
    assert joins["durable_ok"], "fewer tickets stored than acknowledged"
    assert figures["joins"]["bare"]["per_s"] > 0
    for floor in ("jonot_floor", "bare_floor"):  # every answer a 404, none failed beyond it
        assert figures["joins"][floor]["requests"] > 0
        assert figures["joins"][floor]["errors"] == 0, figures["joins"][floor]
    cost = figures["joins"]["cost_ms"]  # None when a load answered nothing
    assert all(cost[k] > 0 for k in ("join", "bare", "jonot_floor", "bare_floor"))
    call_next = figures["call-next"]["sizes"][str(HISTORY)]
    assert call_next["http"]["errors"] == 0
    assert 0 < call_next["http"]["p50_ms"] <= call_next["http"]["p99_ms"]
    assert 0 < call_next["domain"]["p50_ms"] <= call_next["domain"]["p99_ms"]
    assert figures["call-next"]["plans"]["statements"] > 5
    modes = figures["durability"]["modes"]
    assert modes["FULL"]["per_s"] > 0 and modes["NORMAL"]["per_s"] > 0


# The browser parts (``pages``, ``soak``) alone, at tiny sizes: Chromium, 8 viewers, 3 calls,
# a display open for 6 s under a call a second.
BROWSER_SMOKE = """
import functools, sys
import bench.__main__ as cli
from bench import pages, soak
pages.run = functools.partial(pages.run, viewers=8, calls=3)
soak.run = functools.partial(soak.run, minutes=0.1, call_every_s=1.0)
cli.PARTS = cli.BROWSER_PARTS
cli.cpu_busy_share = lambda seconds=1.0, _f=cli.cpu_busy_share: _f(0.05)
cli.fsync_commits_per_s = functools.partial(cli.fsync_commits_per_s, count=20)
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_quick_browser_benches_print_figures(tmp_path: Path) -> None:
    figures_file = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, "-c", BROWSER_SMOKE, "all", "--quick", "--json", str(figures_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=TIME_BOUND_S)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    for title in ("Call -> pixels", "First load of each page", "A display open", "Summary"):
        assert title in out, f"{title!r} missing from:\n{out[-3000:]}"
    assert "FAILED" not in out
    figures = json.loads(figures_file.read_text())
    shown = figures["pages"]
    assert shown["samples"] == 3 and shown["missed"] == 0
    assert 0 <= shown["display"]["p50_ms"] <= shown["display"]["max_ms"]
    assert 0 <= shown["ticket"]["p50_ms"] <= shown["ticket"]["max_ms"] < 5000
    assert shown["with_pages"]["threads"] > 0 and shown["browser"]["processes"] > 0
    for name in ("display", "ticket", "kiosk", "desk"):
        load = shown["first_load"][name]
        assert load["bytes"] > 10_000 and load["fcp_ms"] > 0, (name, load)
    soaked = figures["soak"]
    assert soaked["calls"] >= 4 and soaked["page_errors"] == []
    assert soaked["heap_start_kib"] > 0 and soaked["heap_end_kib"] > 0


@pytest.mark.slow
def test_the_counted_program_answers_every_case(tmp_path: Path) -> None:
    """``bench instructions`` runs ``bench/_instr_case.py`` under callgrind (minutes, so
    not here): the program itself answers each case with its expected status."""
    for case in ("join", "jonot_404", "bare", "bare_404"):
        proc = subprocess.run(
            [sys.executable, "-m", "bench._instr_case", str(tmp_path / case), case, "3"],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"{case}: 3 requests answered" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "bench._instr_case", str(tmp_path / "x"),
                           "nope", "1"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown case" in proc.stderr


def test_callgrind_totals_are_read_from_its_summary_line() -> None:
    from bench.instructions import callgrind_total

    text = "# callgrind format\nversion: 1\nevents: Ir\nsummary: 6871194856\n\ntotals: 1\n"
    assert callgrind_total(text) == 6_871_194_856
    assert callgrind_total("events: Ir\ntotals: 42\n") == 42
    with pytest.raises(ValueError):
        callgrind_total("events: Ir\n")
