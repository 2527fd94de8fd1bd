"""The cloud holding 2,000 ticket-page streams: one call reaching them, and what it costs.

``python -m bench cloud-streams [--quick]`` (or ``python -m bench.cloud_streams
[--streams N] [--backend sqlite|postgres|both]``).

An office (``jonot-local serve``, sync on) with N waiting tickets in one queue
syncs them to ``jonot-local cloud serve`` (threads and connection limit raised
to hold N streams: ``JONOT_THREADS``, ``JONOT_CONNECTION_LIMIT``). This process
then opens one ``/api/v1/tickets/by-hash/{hash}/events`` stream per ticket on
the cloud, 8 per loopback source address (127.0.x.y, as phones are many
addresses), read by one ``selectors`` loop, and waits until each has its first
``ticket`` event. Then a desk presses call-next in the office a few times: every
waiting ticket's position changes, so every stream must get a ``ticket`` event.
Measured per stream: the time from the office's call-next response to the event
(the sync lag included: debounce, push, apply, wake-up, the view read again),
and the spread after the first stream got it (the cloud's fan-out alone). Also
the cloud's RSS, threads and open fds idle and with the streams held.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from typing import Any

from jonot_local.sync import outbox

from jonot_local.db import open_store
from jonot_local.domain import tickets

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
from .sync_catchup import _cursor_reader, _postgres, cloud_server
from .viewers import Viewers, server_resources, viewer_address

TARGET_P99_MS = 1000.0


class Streams(Viewers):
    """One SSE connection per path, read by the viewers' selector loop."""

    def connect_paths(self, paths: list[str]) -> None:
        for path in paths:
            request = (f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                       "Accept: text/event-stream\r\n\r\n").encode()
            sock = socket.create_connection((self.host, self.port), timeout=10,
                                            source_address=(viewer_address(len(self.socks)), 0))
            sock.sendall(request)
            sock.setblocking(False)
            self.socks.append(sock)
            with self.lock:
                self.buffers[sock.fileno()] = b""
                self.selector.register(sock, 1)  # selectors.EVENT_READ
        if not self.thread.is_alive():
            self.thread.start()


def cloud_env(streams: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    threads = max(600, streams + 100)
    return {"JONOT_THREADS": str(threads), "JONOT_CONNECTION_LIMIT": str(threads + 300),
            "JONOT_HASH_LOOKUP_PER_MIN": "1000000", "JONOT_HASH_MISS_PER_MIN": "1000000",
            **(extra or {})}


def run(quick: bool = False, verbose: bool = False, streams: int | None = None,
        rounds: int | None = None, backends: tuple[str, ...] = ("sqlite", "postgres"),
        env: dict[str, str] | None = None) -> dict[str, Any]:
    streams = streams or (100 if quick else 2_000)
    rounds = rounds or (1 if quick else 3)
    results: dict[str, Any] = {"streams": streams, "rounds": rounds}
    cluster = None
    try:
        for backend in backends:
            url = ""
            if backend == "postgres":
                cluster, url = _postgres(cluster)
                if not url:
                    results[backend] = {"skipped": "PostgreSQL is not installed"}
                    continue
            results[backend] = _one(backend, url, streams, rounds, env or {})
    finally:
        if cluster is not None:
            cluster.stop()
    _report(results, verbose)
    return results


def _one(backend: str, database_url: str, n: int, rounds: int,
         env: dict[str, str]) -> dict[str, Any]:
    from jonot_local.sync.cloud.offices import add_office

    out: dict[str, Any] = {}
    with temp_dir(f"streams-{backend}") as tmp:
        office = seed_office(tmp / "office", n_queues=1, n_desks=1)
        store = open_store(tmp / "office")
        try:
            outbox.install(store)
            with store.write() as tx:
                for _ in range(n + rounds):
                    tickets.join(tx, office["queues"][0], source="kiosk")
            with store.read() as tx:
                hashes = [r["hash"] for r in tx.all(
                    "SELECT hash FROM tickets WHERE state = 'WAITING' ORDER BY number")]
                head = tx.one("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")["seq"]
                epoch = outbox.identity(tx)["epoch_id"]
        finally:
            store.close()
        reader = _cursor_reader(tmp / "cloud", database_url)
        office_id, token = add_office(reader, "Streams")
        cloud = cloud_server(tmp / "cloud", database_url, env=cloud_env(n, env)).start()
        server = feed = None
        try:
            assert cloud.proc is not None
            server = jonot_server(tmp / "office", env={
                "JONOT_CLOUD_URL": cloud.url, "JONOT_CLOUD_TOKEN": token,
                "JONOT_BACKUP_INTERVAL_S": "0"}).start(timeout=60)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with reader.read() as tx:
                    row = tx.one("SELECT acked_seq FROM office_epoch WHERE office_id = ? AND "
                                 "epoch_id = ?", (office_id, epoch))
                if row and row["acked_seq"] >= head:
                    break
                time.sleep(0.1)
            out["idle"] = server_resources(cloud.proc.pid)
            staff = HttpClient(server.url, bearer_headers(server.url))
            # The tickets called in the rounds are the first ones; the streams are the rest.
            watched = hashes[rounds:rounds + n]
            feed = Streams("127.0.0.1", cloud.port, "")
            feed.expect(b"event: ticket")
            note(f"{backend}: opening {len(watched)} streams on the cloud")
            t0 = time.perf_counter()
            feed.connect_paths([f"/api/v1/tickets/by-hash/{h}/events" for h in watched])
            got = feed.wait_all(120)
            out["connect_s"] = round(time.perf_counter() - t0, 2)
            out["connected"] = len(got)
            time.sleep(1.0)
            if cloud.proc.poll() is not None:
                raise RuntimeError("the cloud died with the streams open:\n"
                                   + cloud.log_path.read_text()[-2000:])
            out["held"] = server_resources(cloud.proc.pid)
            delays: list[float] = []
            spread: list[float] = []
            missing = 0
            for _ in range(rounds):
                feed.expect(b"event: ticket")
                status, body = staff.request(
                    "POST", f"/api/v1/desks/{office['desks'][0]}/call-next")
                answered = time.perf_counter()
                if status != 200:
                    raise RuntimeError(f"call-next answered {status} {body}")
                seen = feed.wait_all(30)
                missing += len(watched) - len(seen)
                times = sorted(seen.values())
                delays.extend(max(0.0, t - answered) for t in times)
                if times:
                    spread.extend(t - times[0] for t in times)
                time.sleep(0.5)
            out["after_calls"] = server_resources(cloud.proc.pid)
            out["from_call"] = {**latency_summary(delays), "samples": len(delays),
                                "missing": missing}
            out["fanout_spread"] = latency_summary(spread)
            staff.close()
        finally:
            if feed is not None:
                feed.close()
            if server is not None:
                server.stop()
            cloud.stop()
            reader.close()
    out["meets_target"] = (out["from_call"]["p99_ms"] <= TARGET_P99_MS
                           and out["from_call"]["missing"] == 0)
    return out


def _report(results: dict[str, Any], verbose: bool) -> None:
    rows = []
    for backend in ("sqlite", "postgres"):
        r = results.get(backend)
        if not r:
            continue
        if "skipped" in r:
            rows.append([f"{backend} cloud", r["skipped"], ""])
            continue
        f, s, idle, held = r["from_call"], r["fanout_spread"], r["idle"], r["held"]
        rows.append([f"{backend} cloud: streams open", f"{r['connected']} in {r['connect_s']} s",
                     ""])
        rows.append(["  office call-next response -> event p50 / p99 / max ms",
                     f"{f['p50_ms']} / {f['p99_ms']} / {f['max_ms']}",
                     f"p99 <= {TARGET_P99_MS:g}"])
        rows.append(["  after the first stream got it: p50 / p99 / max ms",
                     f"{s['p50_ms']} / {s['p99_ms']} / {s['max_ms']}", ""])
        rows.append(["  events missing", f["missing"], "0"])
        rows.append(["  cloud RSS MiB idle -> held -> after the calls",
                     f"{idle['rss_mib']} -> {held['rss_mib']} -> {r['after_calls']['rss_mib']}",
                     ""])
        rows.append(["  cloud threads / open fds held", f"{held['threads']} / {held['fds']}", ""])
    print_table(f"The cloud holding {results['streams']:,} ticket streams "
                f"({results['rounds']} calls)", ["figure", "value", "target"], rows)
    if verbose:
        print(f"  raw: {results}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cloud_streams",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the cloud process (repeatable)")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    env = dict(item.split("=", 1) for item in args.env)
    run(streams=args.streams, rounds=args.rounds, backends=backends, env=env,
        verbose=args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
