"""The soak's server side, accelerated: what grows in the server over many calls?

``jonot-local serve`` in a subprocess on a fresh data dir (one queue, one desk),
one ``/api/v1/events`` stream read as a display reads it, and calls as fast as
they are answered: a join, call-next, the previous ticket completed, and the
call's WAV fetched from ``/display/speech/<code>.wav`` (when espeak-ng is
installed), as the soak's display does for every call. 360 calls are the 30-min
soak's worth. RSS, threads and fds are sampled every ``--every`` calls.

``--env GLIBC_TUNABLES=glibc.malloc.tcache_count=7`` gives the server glibc's
default per-thread malloc caches back (``serve`` turns them off otherwise).
``--trace`` runs the server under ``tracemalloc`` (``bench/_traced_serve.py``)
and prints the allocation sites that grew most between the first sample after
warm-up and the end. ``--arena-max N`` sets ``MALLOC_ARENA_MAX`` for the server.

Run: ``python -m bench.memsoak [--calls 1800] [--trace] [--arena-max 2]``.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from .common import HttpClient, ServerProcess, bearer_headers, print_table, seed_office, temp_dir
from .viewers import server_resources


def _rss_parts(pid: int) -> dict[str, float]:
    """RssAnon / RssFile / RssShmem of the process in MiB (Linux)."""
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: round(int(fields[k].split()[0]) / 1024, 1)
            for k in ("RssAnon", "RssFile", "RssShmem")}


def _stack_rss_mib(pid: int) -> float:
    """Resident memory of the mappings the size of a thread stack, 8 MiB (Linux smaps)."""
    total_kib, size_kib = 0, 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if line.startswith("Size:"):
            size_kib = int(line.split()[1])
        elif line.startswith("Rss:") and size_kib == 8192:
            total_kib += int(line.split()[1])
    return round(total_kib / 1024, 1)


def _read_stream(port: int, stop: threading.Event, seen: list[int]) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    sock.settimeout(1.0)
    while not stop.is_set():
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        seen[0] += chunk.count(b"\nid:") + chunk.startswith(b"id:")
    sock.close()


def _snapshot(snap_dir: Path, name: str, timeout: float = 120.0) -> tracemalloc.Snapshot:
    (snap_dir / f"{name}.req").write_text("")
    out = snap_dir / f"{name}.snap"
    deadline = time.monotonic() + timeout
    while not out.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the traced server wrote no snapshot")
        time.sleep(0.1)
    return tracemalloc.Snapshot.load(str(out))


def run(calls: int = 1800, every: int = 100, trace: bool = False,
        arena_max: int | None = None, top: int = 15, speech: bool = True,
        extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Drive ``calls`` calls through a real server; sample RSS every ``every`` calls."""
    speech = speech and shutil.which("espeak-ng") is not None
    samples: list[dict[str, Any]] = []
    with temp_dir("memsoak") as tmp:
        data_dir = tmp / "data"
        snap_dir = tmp / "snaps"
        snap_dir.mkdir()
        office = seed_office(data_dir, n_queues=1, n_desks=1)
        env = {"JONOT_SPEECH_PER_MIN": "100000"}
        if arena_max:
            env["MALLOC_ARENA_MAX"] = str(arena_max)
        env.update(extra_env or {})
        entry = [str(Path(__file__).with_name("_traced_serve.py"))] if trace else ["-m",
                                                                                  "jonot_local"]
        if trace:
            env["JONOT_BENCH_SNAP_DIR"] = str(snap_dir)
        cmd = [sys.executable, *entry, "serve", "--host", "127.0.0.1", "--port", "0",
               "--no-zeroconf", "--data-dir", str(data_dir)]
        server = ServerProcess(cmd, tmp / "server.log", env=env)
        server.start(timeout=180.0 if trace else 30.0)
        try:
            assert server.proc is not None
            pid = server.proc.pid
            staff = HttpClient(server.url, bearer_headers(server.url))
            page = HttpClient(server.url)
            stop, seen = threading.Event(), [0]
            reader = threading.Thread(target=_read_stream, args=(server.port, stop, seen),
                                      daemon=True)
            reader.start()
            queue_path = f"/api/v1/queues/{office['queues'][0]}/tickets"
            call_path = f"/api/v1/desks/{office['desks'][0]}/call-next"
            previous: str | None = None
            wav_bytes = 0
            snaps: dict[str, tracemalloc.Snapshot] = {}
            started = time.monotonic()
            for n in range(1, calls + 1):
                staff.request("POST", queue_path, {})
                status, body = staff.request("POST", call_path)
                if status != 200:
                    raise RuntimeError(f"call-next answered {status} {body}")
                if previous:
                    staff.request("POST", f"/api/v1/tickets/{previous}/complete")
                previous = body["id"]
                if speech:
                    page.request("GET", f"/display/speech/{body['code']}.wav?lang=fi")
                    wav_bytes += 1
                if n == 1 or n % every == 0:
                    samples.append({"calls": n, "t_s": round(time.monotonic() - started, 1),
                                    **server_resources(pid),
                                    "stacks_mib": _stack_rss_mib(pid), **_rss_parts(pid)})
                    if trace and n == 1:
                        snaps["first"] = _snapshot(snap_dir, "first")
            if trace:
                snaps["end"] = _snapshot(snap_dir, "end")
            stop.set()
            db_mib = sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file()) / 2**20
            staff.close()
            page.close()
        finally:
            server.stop()
    results = {"calls": calls, "speech": speech, "arena_max": arena_max, "trace": trace,
               "samples": samples, "events_seen": seen[0], "db_mib": round(db_mib, 1)}
    title = (f"memsoak: {calls} calls{' + WAV' if speech else ''}, MALLOC_ARENA_MAX="
             f"{arena_max or 'default'}{', tracemalloc' if trace else ''}"
             + "".join(f", {k}={v}" for k, v in (extra_env or {}).items()))
    print_table(title, ["calls", "t s", "RSS MiB", "anon", "file", "shmem", "stacks MiB",
                        "threads", "fds"],
                [[s["calls"], s["t_s"], s["rss_mib"], s["RssAnon"], s["RssFile"], s["RssShmem"],
                  s["stacks_mib"], s["threads"], s["fds"]] for s in samples])
    print(f"  database files at the end: {results['db_mib']} MiB; events read by the stream: "
          f"{seen[0]}")
    if trace:
        diff = snaps["end"].compare_to(snaps["first"], "traceback")
        print(f"  traced Python memory: {_total(snaps['first']):.1f} → "
              f"{_total(snaps['end']):.1f} MiB (calls 1 → {calls})")
        for stat in diff[:top]:
            frames = [f"{Path(f.filename).name}:{f.lineno}" for f in stat.traceback][-4:]
            print(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  "
                  f"{' < '.join(reversed(frames))}")
    return results


def _total(snap: tracemalloc.Snapshot) -> float:
    return sum(s.size for s in snap.statistics("filename")) / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=1800)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--trace", action="store_true")
    parser.add_argument("--arena-max", type=int, default=None)
    parser.add_argument("--no-speech", action="store_true", help="skip the WAV fetches")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the server (repeatable)")
    args = parser.parse_args(argv)
    run(calls=args.calls, every=args.every, trace=args.trace, arena_max=args.arena_max,
        speech=not args.no_speech, extra_env=dict(e.split("=", 1) for e in args.env))


if __name__ == "__main__":
    main()
