"""One call reaching 500 connected ``/api/v1/events`` viewers, against a real server.

``jonot-local serve`` runs in a subprocess on a fresh data dir (one queue, one
desk, a few tickets waiting). This process opens ``viewers`` raw-socket
Server-Sent Events connections, read by one ``selectors`` loop in a thread of
its own (cheap enough that the client is not the bottleneck on the two cores
it shares with the server), waits until every viewer has its ``state`` event,
then presses call-next ``rounds`` times. For each call it measures, per
viewer, the time from the call's HTTP response to that viewer receiving the
``ticket`` event of the call, and reports p50/p99/max over all viewers and
rounds, plus the server's RSS and open file descriptors with the viewers
connected, and how long ``/api/v1/health`` takes while they are.

Run: ``python -m bench.viewers [--viewers 500] [--rounds 5]``. With more
viewers than the default stream slots, the server gets ``JONOT_THREADS`` and
``JONOT_CONNECTION_LIMIT`` to match (e.g. ``--viewers 1100`` checks that the
poll()-based loop keeps serving past file descriptor 1024).
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import threading
import time
from pathlib import Path
from typing import Any

from jonot_local.db import open_store
from jonot_local.domain import tickets
from jonot_local.settings import Settings

from .common import (
    HttpClient,
    bearer_headers,
    jonot_server,
    latency_summary,
    note,
    print_table,
    seed_office,
    temp_dir,
)

TARGET_P99_MS = 250.0


class Viewers:
    """Many raw SSE connections read by one selector loop, timestamping chosen markers."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path
        self.selector = selectors.DefaultSelector()
        self.socks: list[socket.socket] = []
        self.buffers: dict[int, bytes] = {}
        self.marker: bytes = b"event: state"
        self.seen: dict[int, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="viewers", daemon=True)

    def connect(self, n: int) -> None:
        """Open ``n`` connections and send each its request (the loop reads them)."""
        request = (f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                   "Accept: text/event-stream\r\n\r\n").encode()
        for _ in range(n):
            sock = socket.create_connection((self.host, self.port), timeout=10,
                                            source_address=(viewer_address(len(self.socks)), 0))
            sock.sendall(request)
            sock.setblocking(False)
            self.socks.append(sock)
            with self.lock:
                self.buffers[sock.fileno()] = b""
                self.selector.register(sock, selectors.EVENT_READ)
        if not self.thread.is_alive():
            self.thread.start()

    def expect(self, marker: bytes) -> None:
        """From now on, time when each viewer receives ``marker``."""
        with self.lock:
            self.marker = marker
            self.seen = {}
            for fd in self.buffers:
                self.buffers[fd] = b""

    def wait_all(self, timeout: float) -> dict[int, float]:
        """Wait until every viewer saw the marker (or ``timeout``); fd -> perf_counter time."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self.lock:
                if len(self.seen) >= len(self.socks):
                    break
            time.sleep(0.005)
        with self.lock:
            return dict(self.seen)

    def _loop(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                ready = self.selector.select(0.02)
                now = time.perf_counter()
                for key, _ in ready:
                    fd = key.fd
                    try:
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        self.selector.unregister(key.fileobj)
                        continue
                    if fd in self.seen:
                        continue
                    # keep only a tail: enough to find a marker split across reads
                    buf = self.buffers[fd][-len(self.marker):] + data
                    if self.marker in buf:
                        self.seen[fd] = now
                        buf = b""
                    self.buffers[fd] = buf
            if not ready:
                time.sleep(0)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for sock in self.socks:
            sock.close()
        self.selector.close()


def viewer_address(i: int) -> str:
    """The loopback source address of viewer ``i``: 8 viewers per address, as TVs are many
    machines (one address may hold only so many streams and connections)."""
    group = i // 8
    return f"127.0.{10 + group // 250}.{1 + group % 250}"


def server_resources(pid: int) -> dict[str, Any]:
    """RSS (MiB), open file descriptors and threads of a process (Linux /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_mib": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
            "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": int(fields["Threads"].strip())}


def _server_env(viewers: int) -> dict[str, str]:
    """Settings for the server: the defaults when they fit ``viewers``, else raised."""
    defaults = Settings.load({}, environ={})
    if viewers <= defaults.threads - defaults.stream_reserve - 8:
        return {}
    threads = viewers + defaults.stream_reserve + 16
    return {"JONOT_THREADS": str(threads), "JONOT_CONNECTION_LIMIT": str(threads + 100)}


def run(quick: bool = False, verbose: bool = False, viewers: int | None = None,
        rounds: int | None = None) -> dict[str, Any]:
    """Connect ``viewers`` public-stream viewers, call ``rounds`` tickets, return the figures.

    Defaults: 500 viewers and 5 calls; ``quick`` (the smoke run): 100 viewers, 2 calls.
    """
    viewers = viewers or (100 if quick else 500)
    rounds = rounds or (2 if quick else 5)
    results: dict[str, Any] = {"viewers": viewers, "rounds": rounds}
    with temp_dir("viewers") as tmp:
        data_dir = tmp / "data"
        office = seed_office(data_dir, n_queues=1, n_desks=1)
        store = open_store(data_dir)
        try:
            with store.write() as tx:
                codes = [tickets.join(tx, office["queues"][0], source="kiosk").code
                         for _ in range(rounds)]
        finally:
            store.close()
        env = _server_env(viewers)
        results["server_env"] = env
        with jonot_server(data_dir, env=env) as server:
            assert server.proc is not None
            pid = server.proc.pid
            results["idle"] = server_resources(pid)
            staff = HttpClient(server.url, bearer_headers(server.url))
            staff.request("GET", "/api/v1/health")  # warm the keep-alive connection
            feed = Viewers("127.0.0.1", server.port, "/api/v1/events")
            try:
                note(f"connecting {viewers} viewers")
                t0 = time.perf_counter()
                feed.connect(viewers)
                got = feed.wait_all(60)
                results["connect_s"] = round(time.perf_counter() - t0, 2)
                results["connected"] = len(got)
                time.sleep(0.5)
                if server.proc.poll() is not None:
                    raise RuntimeError("the server died with the viewers connected:\n"
                                       + server.log_path.read_text()[-2000:])
                results["with_viewers"] = server_resources(pid)
                health = []
                probe = HttpClient(server.url)
                for _ in range(20):
                    h0 = time.perf_counter()
                    probe.request("GET", "/api/v1/health")
                    health.append(time.perf_counter() - h0)
                probe.close()
                results["health_while_held"] = latency_summary(health)
                latencies: list[float] = []
                from_press: list[float] = []
                early = missing = 0
                per_round = []
                for code in codes:
                    feed.expect(f'"action":"called","code":"{code}"'.encode())
                    pressed = time.perf_counter()
                    status, body = staff.request(
                        "POST", f"/api/v1/desks/{office['desks'][0]}/call-next")
                    answered = time.perf_counter()
                    if status != 200 or body["code"] != code:
                        raise RuntimeError(f"call-next answered {status} {body}")
                    seen = feed.wait_all(10)
                    missing += viewers - len(seen)
                    from_press.extend(t - pressed for t in seen.values())
                    delays = [t - answered for t in seen.values()]
                    early += sum(1 for d in delays if d < 0)
                    delays = [max(0.0, d) for d in delays]
                    latencies.extend(delays)
                    per_round.append({"code": code, **latency_summary(delays)})
                    time.sleep(0.2)
                results["fanout"] = {**latency_summary(latencies), "samples": len(latencies),
                                     "missing": missing, "before_response": early}
                results["from_request"] = latency_summary(from_press)
                results["per_round"] = per_round
            finally:
                feed.close()
                staff.close()
    # the headline figures also at the top level, for the summary of ``python -m bench``
    results.update({"p50_ms": results["fanout"]["p50_ms"], "p99_ms": results["fanout"]["p99_ms"],
                    "max_ms": results["fanout"]["max_ms"],
                    "server_rss_mib": results["with_viewers"]["rss_mib"],
                    "server_fds": results["with_viewers"]["fds"]})
    results["meets_target"] = (results["fanout"]["p99_ms"] <= TARGET_P99_MS
                               and results["fanout"]["missing"] == 0)
    _report(results, verbose)
    return results


def _report(results: dict[str, Any], verbose: bool) -> None:
    f, held, idle = results["fanout"], results["with_viewers"], results["idle"]
    print_table(
        f"One call reaching {results['viewers']} /api/v1/events viewers "
        f"({results['rounds']} calls; target p99 <= {TARGET_P99_MS:g} ms)",
        ["figure", "value"],
        [["viewers connected", f"{results['connected']} in {results['connect_s']} s"],
         ["call response -> event, p50 ms", f["p50_ms"]],
         ["call response -> event, p99 ms", f["p99_ms"]],
         ["call response -> event, max ms", f["max_ms"]],
         ["events missing", f["missing"]],
         ["event before the call's response (counted as 0)", f["before_response"]],
         ["call request sent -> event, p50 / p99 ms",
          f"{results['from_request']['p50_ms']} / {results['from_request']['p99_ms']}"],
         ["server RSS MiB (idle -> with viewers)", f"{idle['rss_mib']} -> {held['rss_mib']}"],
         ["server open fds (idle -> with viewers)", f"{idle['fds']} -> {held['fds']}"],
         ["server threads", held["threads"]],
         ["/health p50/p99 ms while held",
          f"{results['health_while_held']['p50_ms']} / "
          f"{results['health_while_held']['p99_ms']}"]])
    verdict = "meets" if results["meets_target"] else "MISSES"
    print(f"  {verdict} the target (p99 {f['p99_ms']} ms over {f['samples']} deliveries)")
    if verbose:
        for r in results["per_round"]:
            print(f"  {r['code']}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                  f"max {r['max_ms']} ms")
        print(f"  raw: {json.dumps(results)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--viewers", type=int, default=None, help="default 500 (quick: 100)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    run(quick=args.quick, verbose=args.verbose, viewers=args.viewers, rounds=args.rounds)


if __name__ == "__main__":
    main()
