"""Joins while the office is flooded with wrong passwords, and what one address gets.

``jonot-local serve`` in a subprocess with the real password hash (scrypt). A
desk joins tickets at a steady 40/s (admin token, from 127.0.0.1): first on
an idle server, then while 8 clients (127.0.0.2–9, one keep-alive connection
each) send wrong passwords for the admin account as fast as they are answered.
Twice: with the default budgets (the flood is soon answered 429 with no hash
work) and with the budgets lifted, so every wrong password costs a scrypt
check — the figure that shows the check runs outside the write lock. Then
one address alone: how many wrong passwords it gets checked in a few seconds,
and how many right-password sign-ins per second it gets.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from typing import Any

from .common import (
    ADMIN,
    bearer_headers,
    jonot_server,
    latency_summary,
    note,
    print_table,
    seed_office,
    temp_dir,
)

FLOODERS = 8
JOINS_PER_S = 40  # one desk joining steadily
TARGET_RATIO = 2.0  # join p50 while flooded, against idle
LIFTED = {"JONOT_SIGNIN_FREE_FAILURES": "1000000",
          "JONOT_SIGNIN_ADDRESS_FREE_FAILURES": "1000000",
          "JONOT_SIGNIN_ACCOUNT_FREE_FAILURES": "1000000"}
TOKEN = "/api/v1/auth/token"


class SourceClient:
    """One keep-alive connection to the server from a chosen loopback source address."""

    def __init__(self, port: int, source: str, headers: dict[str, str] | None = None) -> None:
        self.port, self.source, self.headers = port, source, headers or {}
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: Any) -> int:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60,
                                                   source_address=(self.source, 0))
        try:
            self.conn.request("POST", path, body=json.dumps(body),
                              headers={"Content-Type": "application/json", **self.headers})
            resp = self.conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            return 0
        return resp.status

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


CONFIGS = (("default budgets", None), ("budgets lifted", LIFTED))


def run(quick: bool = False, verbose: bool = False, flood_s: float | None = None,
        alone_s: float | None = None, configs: tuple[str, ...] | None = None
        ) -> dict[str, Any]:
    """Measure join latency idle and under a sign-in flood; print and return the figures.

    ``flood_s``: seconds of joins idle and then flooded (3 quick, 10 full);
    ``alone_s``: seconds of one address guessing alone (3 quick, 15 full);
    ``configs``: which of ``CONFIGS`` to run (default: both).
    """
    flood_s = flood_s or (3.0 if quick else 10.0)
    alone_s = alone_s or (3.0 if quick else 15.0)
    results: dict[str, Any] = {"flooders": FLOODERS, "seconds": flood_s,
                               "joins_per_s": JOINS_PER_S}
    with temp_dir("signin") as tmp:
        data_dir = tmp / "data"
        office = seed_office(data_dir, n_queues=1, n_desks=1)
        join = f"/api/v1/queues/{office['queues'][0]}/tickets"
        for label, env in CONFIGS:
            if configs is not None and label not in configs:
                continue
            note(f"jonot-local serve ({label}): joins for {flood_s:g} s idle, then under "
                 f"{FLOODERS} wrong-password clients")
            with jonot_server(data_dir, env=env) as server:
                results[label] = _flooded_joins(server.url, server.port, join, flood_s)
                if env is None:
                    note(f"one address alone for {alone_s:g} s: wrong, then right passwords")
                    results["one address"] = _one_address(server.port, alone_s)
    idle = results["default budgets"]["idle"]["p50_ms"]
    ran = [label for label, _ in CONFIGS if label in results]
    for label in ran:
        r = results[label]
        r["ratio_p50"] = round(r["flooded"]["p50_ms"] / max(0.01, r["idle"]["p50_ms"]), 2)
        r["ratio_p99"] = round(r["flooded"]["p99_ms"] / max(0.01, r["idle"]["p99_ms"]), 2)
    results["meets_target"] = all(results[k]["ratio_p50"] <= TARGET_RATIO
                                  for k in ran)
    results["idle_p50_ms"] = idle
    _report(results, verbose)
    return results


def _flooded_joins(url: str, port: int, join: str, seconds: float) -> dict[str, Any]:
    headers = {**bearer_headers(url, ADMIN)}
    desk = SourceClient(port, "127.0.0.1", headers)

    def joins(seconds: float) -> list[float]:
        """Joins at JOINS_PER_S for ``seconds`` (paced, as desks and kiosks would)."""
        out = []
        began = time.perf_counter()
        for i in range(int(seconds * JOINS_PER_S)):
            time.sleep(max(0.0, began + i / JOINS_PER_S - time.perf_counter()))
            t0 = time.perf_counter()
            if desk.post(join, {}) != 201:
                raise RuntimeError("a join failed")
            out.append(time.perf_counter() - t0)
        return out

    joins(0.5)
    idle = joins(seconds)
    stop = threading.Event()
    answers: Counter[int] = Counter()
    lock = threading.Lock()

    def flood(k: int) -> None:
        client = SourceClient(port, f"127.0.0.{2 + k}")
        i = 0
        while not stop.is_set():
            status = client.post(TOKEN, {"username": ADMIN[0], "password": f"guess-{k}-{i}"})
            i += 1
            with lock:
                answers[status] += 1
        client.close()

    threads = [threading.Thread(target=flood, args=(k,), daemon=True) for k in range(FLOODERS)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    began = time.perf_counter()
    try:
        flooded = joins(seconds)
    finally:
        seconds = time.perf_counter() - began
        stop.set()
        for t in threads:
            t.join(60)
        desk.close()
    return {"idle": latency_summary(idle), "flooded": latency_summary(flooded),
            "flood_401": answers[401], "flood_429": answers[429],
            "flood_other": sum(v for k, v in answers.items() if k not in (401, 429)),
            "flood_seconds": round(seconds + 0.5, 1)}


def _one_address(port: int, seconds: float) -> dict[str, Any]:
    client = SourceClient(port, "127.0.0.20")
    answers: Counter[int] = Counter()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        answers[client.post(TOKEN, {"username": ADMIN[0], "password": "wrong-password"})] += 1
    client.close()
    right = SourceClient(port, "127.0.0.21")
    ok = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds / 2:
        ok += right.post(TOKEN, {"username": ADMIN[0], "password": ADMIN[1]}) == 201
    right_s = time.perf_counter() - began
    right.close()
    return {"seconds": seconds, "wrong_checked_401": answers[401],
            "wrong_refused_429": answers[429],
            "wrong_checked_per_min": round(answers[401] * 60 / seconds, 1),
            "right_per_s": round(ok / right_s, 1)}


def _report(results: dict[str, Any], verbose: bool) -> None:
    rows = []
    for label in [label for label, _ in CONFIGS if label in results]:
        r = results[label]
        rows.append([f"idle ({label})", r["idle"]["p50_ms"], r["idle"]["p99_ms"], "", ""])
        rows.append([f"{FLOODERS} clients flooding ({label})", r["flooded"]["p50_ms"],
                     r["flooded"]["p99_ms"], f"{r['ratio_p50']} / {r['ratio_p99']}",
                     f"{r['flood_401']} x 401, {r['flood_429']} x 429"])
    print_table(f"Joins under a wrong-password flood ({results['joins_per_s']}/s for "
                f"{results['seconds']:g} s each, target p50 <= {TARGET_RATIO:g} x idle)",
                ["joins", "p50 ms", "p99 ms", "x idle p50 / p99", "sign-in answers"], rows)
    one = results["one address"]
    print(f"  one address alone, {one['seconds']:g} s of wrong passwords: "
          f"{one['wrong_checked_401']} checked (401), {one['wrong_refused_429']} refused (429) "
          f"= {one['wrong_checked_per_min']} checked/min; right password: "
          f"{one['right_per_s']} sign-ins/s")
    print(f"  {'meets' if results['meets_target'] else 'MISSES'} the target")
    if verbose:
        print(f"  raw: {results}")
