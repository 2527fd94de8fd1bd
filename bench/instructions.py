"""Instructions per request, counted by callgrind: a figure the machine's load cannot move.

Requests per second on a shared machine move by ±15 % from one turn to the
next; the instructions a request executes do not. This part runs
``bench/_instr_case.py`` under ``valgrind --tool=callgrind`` once per case and
once as a baseline (the same set-up and warm-up, no measured requests), and
divides each run's extra instructions by its requests:

- ``join``: ``POST /api/v1/queues/{id}/tickets`` with a staff token;
- ``jonot_404``: a path the app does not have, with the same token (the floor:
  Flask's request, routing, the error handler's problem JSON);
- ``bare`` and ``bare_404``: the same two for the bare Flask + SQLite insert
  endpoint of ``bench/bare_app.py``.

What is counted: user-space instructions of the WSGI app called in process
(Python, Flask, SQLite), with ``synchronous=FULL`` as served. Not counted: the
kernel (``fsync``, sockets), waitress, and waiting. So this is the part of a
join's cost that the code controls; ``joins`` says what it comes to over HTTP.
Two runs at a time (one per core); about 3 minutes on a 2-core machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ._instr_case import CASES
from .common import note, print_table, temp_dir

REQUESTS = 200
QUICK_REQUESTS = 20
_TOTALS = re.compile(r"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


def callgrind_total(text: str) -> int:
    """The instruction total of a callgrind output file's text (its ``summary:`` line)."""
    match = _TOTALS.search(text)
    if match is None:
        raise ValueError("no summary or totals line in the callgrind output")
    return int(match.group(1))


def _counted(work: Path, case: str, n: int) -> int:
    """Instructions of one run of ``_instr_case`` under callgrind."""
    out = work / f"callgrind-{case}-{n}.out"
    proc = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
         "-m", "bench._instr_case", str(work / f"data-{case}-{n}"), case, str(n)],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"}, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{case}: the counted run failed:\n{proc.stderr[-2000:]}")
    return callgrind_total(out.read_text())


def run(quick: bool = False, verbose: bool = False) -> dict[str, Any] | None:
    """Count instructions per request of each case; print and return the figures."""
    if shutil.which("valgrind") is None:
        print("instructions: valgrind is not installed (apt-get install -y valgrind)")
        return None
    n = QUICK_REQUESTS if quick else REQUESTS
    with temp_dir("instructions") as work:
        note(f"callgrind: a baseline and {len(CASES)} cases of {n} requests, two at a time")
        jobs = [("join", 0), *((case, n) for case in CASES)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            totals = dict(zip(jobs, pool.map(lambda job: _counted(work, *job), jobs)))
    baseline = totals[("join", 0)]
    per = {case: round((totals[(case, n)] - baseline) / n / 1000, 1) for case in CASES}
    results: dict[str, Any] = {"requests": n, "k_instructions": per,
                               "join_above_404": round(per["join"] - per["jonot_404"], 1),
                               "bare_to_join": round(per["bare"] / per["join"], 3)
                               if per["join"] > 0 else None}
    print_table(
        f"Instructions per request in process (callgrind, {n} requests a case, thousands)",
        ["request", "k instructions"],
        [["jonot-local join, staff token", per["join"]],
         ["jonot-local 404 (problem JSON)", per["jonot_404"]],
         ["bare Flask insert", per["bare"]],
         ["bare Flask 404 (werkzeug's HTML page)", per["bare_404"]]])
    print(f"  a join is its 404 plus {results['join_above_404']:,.0f} k; the bare insert "
          f"executes {results['bare_to_join']:.0%} of a join's instructions. Not counted: "
          "waitress, the kernel (fsync, sockets) and waiting, which over HTTP both servers pay")
    if verbose:
        print(f"  raw totals: {totals}")
    return results
