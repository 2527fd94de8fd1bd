"""The office side of sync: what the outbox costs a join, and how fast a backlog drains.

``python -m bench.sync_office [--quick]``:

- in-process join (one ``Store.write`` each, ``synchronous=FULL``) with sync off
  and with sync on (the outbox entry written in the join's transaction), µs;
- a backlog of N joins made while the cloud was away, drained by the worker
  against the tests' fake cloud on loopback HTTP (entries/s), with the
  office's in-process call-next latency (p50/p99) measured meanwhile.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jonot_local.sync.worker import CloudClient, SyncWorker  # noqa: E402

from jonot_local.app import create_app  # noqa: E402
from jonot_local.domain import queues, tickets  # noqa: E402
from jonot_local.domain.errors import QueueEmpty  # noqa: E402
from jonot_local.settings import Settings  # noqa: E402
from tests.sync_fake_cloud import TOKEN, FakeCloud  # noqa: E402


def _app(data_dir: Path, cloud_url: str | None) -> Any:
    extra = {"cloud_url": cloud_url, "cloud_token": TOKEN} if cloud_url else {}
    return create_app(Settings.load({"data_dir": data_dir, "sync_debounce_s": 0,
                                     "sync_heartbeat_s": 1.0, **extra}, environ={}))


def join_us(data_dir: Path, sync: bool, n: int) -> float:
    app = _app(data_dir, "http://127.0.0.1:9" if sync else None)
    store = app.extensions["jonot"].store
    spent = [0.0]
    if sync:  # time the outbox hook itself: the join's total is dominated by the fsync
        hook = store.before_commit[0]

        def timed(tx: Any) -> None:
            t0 = time.perf_counter()
            hook(tx)
            spent[0] += time.perf_counter() - t0

        store.before_commit[0] = timed
    with store.write() as tx:
        q = queues.create_queue(tx, name="Q", prefix="A")
    spent[0] = 0.0
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            with store.write() as tx:
                tickets.join(tx, q.id, source="kiosk")
        best = min(best, (time.perf_counter() - start) / n)
    store.close()
    HOOK_US.append(spent[0] / (3 * n) * 1e6)
    return best * 1e6


HOOK_US: list[float] = []


def drain(data_dir: Path, backlog: int) -> dict[str, float]:
    cloud = FakeCloud().start()
    app = _app(data_dir, cloud.url)
    rt = app.extensions["jonot"]
    with rt.store.write() as tx:
        q = queues.create_queue(tx, name="Q", prefix="A")
        d = queues.create_desk(tx, name="D", queue_ids=[q.id])
    for _ in range(backlog // 200):
        with rt.store.write() as tx:
            for _ in range(200):
                tickets.join(tx, q.id, source="kiosk")
    # One transaction of 200 joins writes 200 entries (one per ticket).
    with rt.store.read() as tx:
        head = tx.one("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")["seq"]
    worker = SyncWorker(rt.store, rt.settings, CloudClient(cloud.url, TOKEN, 30.0))
    latencies: list[float] = []
    stop = threading.Event()

    def desk() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                with rt.store.write() as tx:
                    tickets.call_next(tx, d.id)
            except QueueEmpty:
                pass
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.01)

    caller = threading.Thread(target=desk, daemon=True)
    start = time.perf_counter()
    worker.start()
    caller.start()
    with rt.store.read() as tx:
        epoch = tx.one("SELECT epoch_id FROM sync_identity")[0]
    # Drained: the cloud holds every entry that was waiting when the worker started
    # (the desk keeps adding a few more meanwhile).
    cloud.wait_for(lambda: cloud.acked(epoch) >= head, timeout=600)
    elapsed = time.perf_counter() - start
    stop.set()
    caller.join()
    worker.stop()
    cloud.stop()
    rt.store.close()
    lat = sorted(latencies)
    return {"entries": float(head), "seconds": elapsed, "entries_per_s": head / elapsed,
            "call_next_p50_ms": 1000 * statistics.median(lat),
            "call_next_p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sync_office")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n, backlog = (200, 5_000) if args.quick else (1_000, 50_000)
    with tempfile.TemporaryDirectory() as tmp:
        off = join_us(Path(tmp) / "off", False, n)
        on = join_us(Path(tmp) / "on", True, n)
        print(f"join in-process: sync off {off:.0f} µs, sync on {on:.0f} µs "
              f"(best of 3 × {n}); the outbox hook itself: {HOOK_US[-1]:.0f} µs a join")
        figures = drain(Path(tmp) / "drain", backlog)
        print(f"backlog of {figures['entries']:.0f} entries drained in "
              f"{figures['seconds']:.1f} s: {figures['entries_per_s']:.0f} entries/s; "
              f"call-next meanwhile p50 {figures['call_next_p50_ms']:.1f} ms, "
              f"p99 {figures['call_next_p99_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
