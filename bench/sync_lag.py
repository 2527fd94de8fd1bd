"""Steady-state sync lag: a local change in the office → the cloud answers it (target p95 ≤ 1 s).

``python -m bench.sync_lag [--changes N] [--database-url postgresql://…]``

Starts ``jonot-local cloud serve`` and ``jonot-local serve`` (syncing to it, the
default debounce) as real processes on loopback, then N times: a staff join in
the office, polled on the cloud by hash every 10 ms until it answers; then N
calls (call-next), polled until the cloud shows ``CALLED``. Prints p50/p95/max.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_sync_e2e import Pair, cloud_view, hash_of, wait_for  # noqa: E402


def _figures(lags: list[float]) -> dict[str, float]:
    lags = sorted(lags)
    return {"p50_ms": round(lags[len(lags) // 2] * 1000, 1),
            "p95_ms": round(lags[max(0, int(len(lags) * 0.95) - 1)] * 1000, 1),
            "max_ms": round(lags[-1] * 1000, 1)}


def run(quick: bool = False, verbose: bool = False, changes: int | None = None,
        backends: tuple[str, ...] = ("sqlite", "postgres")) -> dict[str, Any]:
    """``python -m bench sync-lag``: both cloud stores (PostgreSQL with fsync on)."""
    from .sync_catchup import _postgres

    changes = changes or (10 if quick else 50)
    results: dict[str, Any] = {"changes": changes}
    cluster = None
    try:
        for backend in backends:
            url = ""
            if backend == "postgres":
                cluster, url = _postgres(cluster)
                if not url:
                    continue
            results[backend] = measure(changes, url)
            for kind, f in results[backend].items():
                print(f"  sync lag, {kind} -> cloud ({backend} cloud, {changes} changes): "
                      f"p50 {f['p50_ms']} ms, p95 {f['p95_ms']} ms, max {f['max_ms']} ms "
                      f"(target p95 <= 1000 ms)")
    finally:
        if cluster is not None:
            cluster.stop()
    return results


def measure(changes: int = 50, database_url: str = "") -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="jonot-sync-lag-") as tmp:
        pair = Pair(Path(tmp), database_url)
        try:
            wait_for("the first sync", lambda: pair.health()["state"] == "online", timeout=15)
            joined, join_lags = [], []
            for _ in range(changes):
                t0 = time.perf_counter()
                ticket = pair.join()
                wait_for("a join on the cloud", lambda: cloud_view(pair.cloud, hash_of(ticket)),
                         timeout=10, every=0.01)
                join_lags.append(time.perf_counter() - t0)
                joined.append(ticket)
            call_lags = []
            for _ in range(changes):
                t0 = time.perf_counter()
                called = pair.call_next().json()
                ticket_hash = next(hash_of(t) for t in joined if t["id"] == called["id"])
                wait_for("a call on the cloud", lambda: (
                    (cloud_view(pair.cloud, ticket_hash) or {}).get("state") == "CALLED"),
                    timeout=10, every=0.01)
                call_lags.append(time.perf_counter() - t0)
                pair.complete(called["id"])
            return {"join": _figures(join_lags), "call": _figures(call_lags)}
        finally:
            pair.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sync_lag",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--database-url", default="", help="a PostgreSQL cloud (default SQLite)")
    args = parser.parse_args(argv)
    figures = measure(args.changes, args.database_url)
    backend = "PostgreSQL" if args.database_url else "SQLite"
    for kind, f in figures.items():
        print(f"sync lag, {kind} → cloud ({backend} cloud, {args.changes} changes): "
              f"p50 {f['p50_ms']} ms, p95 {f['p95_ms']} ms, max {f['max_ms']} ms "
              f"(target p95 ≤ 1000 ms)")
    return 0 if all(f["p95_ms"] <= 1000 for f in figures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
