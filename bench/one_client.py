"""What one client may hold: ``/api/v1/health`` while two addresses try to hold the server.

``jonot-local serve`` runs in a subprocess with its default settings on a
fresh data dir. Address 127.0.0.2 keeps trying to hold ``idle`` connections
with unfinished request headers (reopening those the server refuses or
closes, every second); address 127.0.0.3 tries to hold ``streams`` live
streams of its own tickets (``/tickets/by-hash/<hash>/events``, several
tickets, as one phone with many tabs or a hostile client would). Meanwhile
127.0.0.4 asks for ``/api/v1/health`` on a fresh connection each time, and
the figures are its p50/p99 (target p99 <= 50 ms), how many connections and
streams each address was actually allowed, and the server's RSS and file
descriptors. Without ``--quick`` the first address then stops reopening and,
past the header timeout, the idle connections still open are counted (none
should be) and the streams (all should be).

Run: ``python -m bench one-client`` or ``python -m bench.one_client
[--idle 1000] [--streams 600] [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from jonot_local.db import open_store
from jonot_local.domain import tickets
from jonot_local.settings import Settings

from .common import jonot_server, latency_summary, note, print_table, seed_office, temp_dir

TARGET_P99_MS = 50.0
STREAMS_DEADLINE_S = 60.0
IDLE_FROM, STREAMS_FROM, PROBE_FROM = "127.0.0.2", "127.0.0.3", "127.0.0.4"


def server_resources(pid: int) -> dict[str, Any]:
    """RSS (MiB), open file descriptors and threads of a process (Linux /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_mib": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
            "fds": len(list(Path(f"/proc/{pid}/fd").iterdir())),
            "threads": int(fields["Threads"].strip())}


def server_connections(pid: int) -> dict[str, int]:
    """Connections the server process holds open, by peer address (Linux /proc, IPv4).

    Counts only sockets the server accepted (in its fd table), not those still
    waiting in the listen backlog.
    """
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    counts: dict[str, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if len(cols) < 10 or cols[9] not in inodes or cols[3] != "01":  # 01: ESTABLISHED
            continue
        peer = cols[2].split(":")[0]
        address = ".".join(str(int(peer[i:i + 2], 16)) for i in (6, 4, 2, 0))
        counts[address] = counts.get(address, 0) + 1
    return counts


def _connect(port: int, source: str) -> socket.socket | None:
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=5,
                                        source_address=(source, 0))
    except OSError:
        return None


def _answered(sock: socket.socket, wait: float) -> bytes | None:
    """What the server sent within ``wait`` s (``b""``: it closed; ``None``: nothing yet)."""
    sock.settimeout(wait)
    try:
        return sock.recv(4096)
    except TimeoutError:
        return None
    except OSError:
        return b""


class IdleHolder:
    """One address trying to keep ``target`` connections open with unfinished headers.

    A thread opens connections until ``target`` are open, each sending half a
    request's headers; every second it drops those the server refused or
    closed and opens new ones in their place, as a persistent client would.
    """

    def __init__(self, port: int, target: int) -> None:
        self.port, self.target = port, target
        self.socks: list[socket.socket] = []
        self.opened = self.refused = self.closed = 0
        self.refill = threading.Event()
        self.refill.set()
        self.stop = threading.Event()
        self.first_round = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, name="idle-holder", daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            if self.refill.is_set():
                with self.lock:
                    self._open_up_to_target()
            self.stop.wait(0.5)
            self.sweep()
            self.first_round.set()
            self.stop.wait(0.5)

    def _open_up_to_target(self) -> None:
        while len(self.socks) < self.target and not self.stop.is_set():
            sock = _connect(self.port, IDLE_FROM)
            if sock is None:
                return
            with contextlib.suppress(OSError):
                sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: jonot\r\nX-Slow: ")
            self.opened += 1
            self.socks.append(sock)

    def sweep(self) -> int:
        """Drop the connections the server answered or closed; returns how many are held."""
        with self.lock:
            return self._sweep()

    def _sweep(self) -> int:
        kept = []
        for sock in self.socks:
            data = _answered(sock, 0.0001)
            if data is None:
                kept.append(sock)
                continue
            if data.startswith(b"HTTP/1.1 429"):
                self.refused += 1
            else:
                self.closed += 1
            sock.close()
        self.socks = kept
        return len(kept)

    def figures(self) -> dict[str, int]:
        return {"tried": self.target, "held": len(self.socks),
                "opened": self.opened, "refused": self.refused,
                "closed_by_server": self.closed}

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        with self.lock:
            for sock in self.socks:
                sock.close()
            self.socks = []


def hold_streams(port: int, hashes: list[str], count: int
                 ) -> tuple[list[socket.socket], dict[str, int]]:
    """Open ``count`` ticket streams (round robin over ``hashes``), one connection each.

    Gives up after ``STREAMS_DEADLINE_S`` (a server that stopped answering).
    """
    held: list[socket.socket] = []
    answers = {"tried": count, "held": 0, "429_stream": 0, "429_connection": 0,
               "503": 0, "other": 0, "not_tried": 0}
    deadline = time.monotonic() + STREAMS_DEADLINE_S
    for i in range(count):
        if time.monotonic() > deadline:
            answers["not_tried"] = count - i
            break
        sock = _connect(port, STREAMS_FROM)
        if sock is None:
            answers["other"] += 1
            continue
        with contextlib.suppress(OSError):
            sock.sendall(f"GET /api/v1/tickets/by-hash/{hashes[i % len(hashes)]}/events "
                         "HTTP/1.1\r\nHost: jonot\r\nAccept: text/event-stream\r\n\r\n".encode())
        data = _answered(sock, 3) or b""
        if data.startswith(b"HTTP/1.1 200"):
            held.append(sock)
            continue
        sock.close()
        if data.startswith(b"HTTP/1.1 429") and b"Connection: close" in data:
            answers["429_connection"] += 1
        elif data.startswith(b"HTTP/1.1 429"):
            answers["429_stream"] += 1
        elif data.startswith(b"HTTP/1.1 503"):
            answers["503"] += 1
        else:
            answers["other"] += 1
    answers["held"] = len(held)
    return held, answers


def _probe_loop(port: int, every_s: float, stop: Any, ready: Any, out: Any) -> None:
    """The prober's process: probe until ``stop`` is set, then send the samples on ``out``."""
    request = b"GET /api/v1/health HTTP/1.1\r\nHost: jonot\r\nConnection: close\r\n\r\n"
    samples: list[tuple[float, float]] = []
    failures = 0
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5,
                                          source_address=(PROBE_FROM, 0)) as sock:
                sock.sendall(request)
                got = b""
                while b'"status"' not in got:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    got += chunk
            ok = got.startswith(b"HTTP/1.1 200")
        except OSError:
            ok = False
        if ok:
            samples.append((t0, time.monotonic() - t0))
        else:
            failures += 1
        ready.set()
        stop.wait(every_s)
    out.send((samples, failures))
    out.close()


class Prober:
    """``GET /api/v1/health`` from its own address and its own process (so this process's
    work does not show in its figures), a fresh connection every ``every_s``."""

    def __init__(self, port: int, every_s: float = 0.02) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._stop, self._ready = ctx.Event(), ctx.Event()
        self._recv, send = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_probe_loop,
                                   args=(port, every_s, self._stop, self._ready, send),
                                   name="health-probe", daemon=True)
        self.samples: list[tuple[float, float]] = []  # (monotonic time, seconds)
        self.failures = 0

    def start(self) -> None:
        """Start probing; returns once the first probe is done."""
        self.process.start()
        self._ready.wait(60)

    def finish(self) -> None:
        """Stop probing and collect the samples."""
        self._stop.set()
        if self._recv.poll(30):
            self.samples, self.failures = self._recv.recv()
        self.process.join(10)

    def between(self, start: float, end: float) -> list[float]:
        return [s for t, s in self.samples if start <= t < end]


def run(quick: bool = False, verbose: bool = False, idle: int | None = None,
        streams: int | None = None) -> dict[str, Any]:
    """Attack with ``idle`` connections and ``streams`` streams; return the figures."""
    idle = idle or (100 if quick else 1000)
    streams = streams or (60 if quick else 600)
    defaults = Settings.load({}, environ={})
    results: dict[str, Any] = {
        "idle_tried": idle, "streams_tried": streams,
        "settings": {k: getattr(defaults, k, None) for k in (
            "connections_per_address", "header_timeout_s", "streams_per_client",
            "streams_per_ticket", "device_stream_reserve", "threads", "connection_limit")}}
    with temp_dir("one-client") as tmp:
        data_dir = tmp / "data"
        office = seed_office(data_dir)
        store = open_store(data_dir)
        per_ticket = getattr(defaults, "streams_per_ticket", 4)
        try:
            with store.write() as tx:
                hashes = [tickets.join(tx, office["queues"][0], source="kiosk").hash
                          for _ in range(max(1, streams // per_ticket))]
        finally:
            store.close()
        with jonot_server(data_dir) as server:
            assert server.proc is not None
            pid = server.proc.pid
            results["idle_server"] = server_resources(pid)
            prober = Prober(server.port)
            prober.start()
            holder = IdleHolder(server.port, idle)
            stream_socks: list[socket.socket] = []
            try:
                time.sleep(1.0 if quick else 2.0)
                t_attack = time.monotonic()
                note(f"{IDLE_FROM} keeps trying to hold {idle} idle connections; "
                     f"{STREAMS_FROM} opens {streams} streams")
                holder.thread.start()
                holder.first_round.wait(60)
                stream_socks, results["streams"] = hold_streams(server.port, hashes, streams)
                t_held = time.monotonic()
                results["attack_s"] = round(t_held - t_attack, 1)
                most: dict[str, int] = {}
                t_end = t_held + (1.0 if quick else 6.0)
                while time.monotonic() < t_end:
                    for address, n in server_connections(pid).items():
                        most[address] = max(most.get(address, 0), n)
                    if "held_server" not in results:
                        results["held_server"] = server_resources(pid)
                    time.sleep(1.0)  # reading /proc/net/tcp is not free: not too often
                results["server_held_most"] = {a: most.get(a, 0)
                                               for a in (IDLE_FROM, STREAMS_FROM)}
                holder.refill.clear()
                results["idle"] = holder.figures()
                if not quick:
                    wait = getattr(defaults, "header_timeout_s", 15.0) + 5
                    note(f"{IDLE_FROM} stops reopening; waiting {wait:.0f} s, past the "
                         "header timeout")
                    time.sleep(wait)
                    results["idle_open_after_timeout"] = holder.sweep()
                    results["streams_open_after_timeout"] = sum(
                        1 for s in stream_socks if _answered(s, 0.001) != b"")
            finally:
                prober.finish()
                results["health_failures"] = prober.failures
                holder.close()
                for sock in stream_socks:
                    sock.close()
            results["health_before"] = _summary(prober.between(0, t_attack))
            results["health_during_attack"] = _summary(prober.between(t_attack, t_held))
            results["health_while_held"] = _summary(prober.between(t_held, t_end))
    held = results["health_while_held"]
    during = results["health_during_attack"]
    results.update({"p50_ms": held["p50_ms"], "p99_ms": held["p99_ms"],
                    "attack_p99_ms": during["p99_ms"],
                    "idle_held": results["server_held_most"][IDLE_FROM],
                    "streams_held": results["streams"]["held"],
                    "server_rss_mib": results["held_server"]["rss_mib"],
                    "server_fds": results["held_server"]["fds"]})
    results["meets_target"] = held["p99_ms"] <= TARGET_P99_MS and results["health_failures"] == 0
    _report(results, verbose)
    return results


def _report(r: dict[str, Any], verbose: bool) -> None:
    i, s = r["idle"], r["streams"]
    rows = [
        ["settings (defaults)", ", ".join(f"{k}={v}" for k, v in r["settings"].items())],
        [f"{IDLE_FROM}: connections the server held (most at once) / tried",
         f"{r['server_held_most'][IDLE_FROM]} / {i['tried']} ({i['opened']} opened in all: "
         f"{i['refused']} refused at once with 429, {i['closed_by_server']} closed by the "
         "header timeout)"],
        [f"{STREAMS_FROM}: streams held / tried",
         f"{s['held']} / {s['tried']} (429 per client/ticket {s['429_stream']}, "
         f"429 per address {s['429_connection']}, 503 {s['503']}, no answer {s['other']}, "
         f"not tried in time {s['not_tried']}; the server held "
         f"{r['server_held_most'][STREAMS_FROM]} connections of it at most)"],
        ["both attacks took", f"{r['attack_s']} s"],
        [f"{PROBE_FROM}: /health p50 / p99 / max ms before the attack",
         _lat(r["health_before"])],
        ["  while the attack opens them", _lat(r["health_during_attack"])],
        ["  while held", _lat(r["health_while_held"])],
        ["  failed probes", r["health_failures"]],
        ["server RSS MiB (idle -> held)",
         f"{r['idle_server']['rss_mib']} -> {r['held_server']['rss_mib']}"],
        ["server fds (idle -> held)", f"{r['idle_server']['fds']} -> {r['held_server']['fds']}"],
        ["server threads", r["held_server"]["threads"]],
    ]
    if "idle_open_after_timeout" in r:
        rows.append([f"{IDLE_FROM} stops reopening: open after the header timeout",
                     r["idle_open_after_timeout"]])
        rows.append([f"{STREAMS_FROM}: streams still open then (not cut)",
                     r["streams_open_after_timeout"]])
    print_table(f"/api/v1/health while one address holds idle connections and another "
                f"streams (target p99 <= {TARGET_P99_MS:g} ms)", ["figure", "value"], rows)
    print(f"  {'meets' if r['meets_target'] else 'MISSES'} the target")
    if verbose:
        print(f"  raw: {json.dumps(r, default=str)}")


def _summary(seconds: list[float]) -> dict[str, Any]:
    return {**latency_summary(seconds), "n": len(seconds)}


def _lat(summary: dict[str, Any]) -> str:
    return f"{summary['p50_ms']} / {summary['p99_ms']} / {summary['max_ms']} " \
           f"(n={summary['n']})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--idle", type=int, default=None, help="default 1000 (quick: 100)")
    parser.add_argument("--streams", type=int, default=None, help="default 600 (quick: 60)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    run(quick=args.quick, verbose=args.verbose, idle=args.idle, streams=args.streams)


if __name__ == "__main__":
    main()
