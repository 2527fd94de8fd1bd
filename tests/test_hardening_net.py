"""What one client may hold: connections, request headers' time, request bodies, live streams.

The slot and connection counters alone, then (``slow``) against the real
guarded waitress server on loopback, in a thread of this process, with small
caps. The tests act as many clients by binding source addresses 127.0.0.2,
127.0.0.3, … (all loopback).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jonot_local.app import create_app
from jonot_local.domain import devices, queues, tickets
from jonot_local.netguard import ConnectionCounts
from jonot_local.server import make_server
from jonot_local.settings import Settings
from jonot_local.streamslots import SlotLimits, SlotRefused, StreamSlots

from .support import until

HOST = "127.0.0.1"


class Served:
    """The app under the real guarded waitress server, running in a thread on 127.0.0.1."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        config = {"data_dir": data_dir, "hash_lookup_floor_ms": 0, "sse_heartbeat_s": 0.3,
                  "hash_lookup_per_min": 100_000, "threads": 16, "stream_reserve": 4,
                  "device_stream_reserve": 2, **settings}
        self.app = create_app(Settings.load(config, environ={}))
        self.rt = self.app.extensions["jonot"]
        self.server = make_server(self.app, HOST, 0)
        self.port = self.server.effective_port
        self.thread = threading.Thread(target=self._run, name="waitress-test", daemon=True)
        self.thread.start()
        with self.rt.store.write() as tx:
            self.queue = queues.create_queue(tx, name="General", prefix="A")

    def _run(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.server.run()

    def ticket(self) -> Any:
        with self.rt.store.write() as tx:
            return tickets.join(tx, self.queue.id)

    def device(self, kind: str) -> str:
        with self.rt.store.write() as tx:
            return devices.register(tx, kind, f"The {kind}")[1]

    def stop(self) -> None:
        self.rt.hub.close()
        self.server.task_dispatcher.shutdown(timeout=5)
        for channel in list(self.server.active_channels.values()):
            channel.handle_close()
        self.server.close()
        self.thread.join(5)
        self.rt.store.close()


@contextlib.contextmanager
def served(tmp_path: Path, **settings: Any) -> Iterator[Served]:
    server = Served(tmp_path / "data", **settings)
    try:
        yield server
    finally:
        server.stop()


def connect(port: int, source: str, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=timeout, source_address=(source, 0))


def request_bytes(method: str, path: str, headers: dict[str, str] | None = None,
                  body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_head(sock: socket.socket, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and whatever body bytes came with them."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head: {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, rest


def read_problem(sock: socket.socket, timeout: float = 5.0) -> tuple[int, dict[str, str],
                                                                     dict[str, Any]]:
    """A complete (non-streaming) response whose body is JSON."""
    status, headers, body = read_head(sock, timeout)
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, json.loads(body[:length] or b"{}")


def stream(port: int, path: str, source: str,
           headers: dict[str, str] | None = None) -> tuple[int, socket.socket, Any]:
    """Open a live stream from ``source``: (status, socket, problem body or None)."""
    sock = connect(port, source)
    sock.sendall(request_bytes("GET", path, {"Accept": "text/event-stream", **(headers or {})}))
    status, head, rest = read_head(sock)
    if status == 200:
        return status, sock, None
    length = int(head.get("content-length", "0"))
    while len(rest) < length:
        rest += sock.recv(65536)
    sock.close()
    return status, sock, {"retry_after": head.get("retry-after"), **json.loads(rest)}


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` within ``within`` seconds (reading what it sends)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True
    return False


def health_ms(port: int, source: str) -> float:
    t0 = time.perf_counter()
    with connect(port, source, timeout=3) as sock:
        sock.sendall(request_bytes("GET", "/api/v1/health"))
        status, _, body = read_problem(sock, timeout=3)
    assert status == 200 and body["status"] == "ok"
    return (time.perf_counter() - t0) * 1000


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


# -- the counters --------------------------------------------------------------------------------


def refusal(slots: StreamSlots, client: str, ticket: str | None = None,
            device: bool = False) -> str | None:
    try:
        slots.acquire(client, ticket, device=device)
    except SlotRefused as refused:
        return refused.reason
    return None


def test_anonymous_clients_cannot_use_the_device_reserve() -> None:
    slots = StreamSlots(SlotLimits.of(total=4, device_reserve=2, per_client=0, per_ticket=0))
    assert [refusal(slots, f"10.0.0.{i}") for i in range(3)] == [None, None, "full"]
    assert refusal(slots, "10.0.0.9", device=True) is None
    assert refusal(slots, "10.0.0.9", device=True) is None
    assert refusal(slots, "10.0.0.9", device=True) == "full"
    assert slots.in_use == 4


def test_devices_use_any_slot_and_are_not_counted_per_client() -> None:
    slots = StreamSlots(SlotLimits.of(total=3, device_reserve=1, per_client=1, per_ticket=0))
    assert [refusal(slots, "desk-pc", device=True) for _ in range(3)] == [None, None, None]
    assert refusal(slots, "phone") == "full" and slots.held_by("desk-pc") == 0


def test_per_client_and_per_ticket_caps_and_idempotent_release() -> None:
    slots = StreamSlots(SlotLimits.of(total=10, device_reserve=0, per_client=2, per_ticket=2))
    first = slots.acquire("phone", "t1")
    slots.acquire("phone", "t2")
    assert refusal(slots, "phone", "t3") == "client"
    assert refusal(slots, "tablet", "t1") is None
    assert refusal(slots, "laptop", "t1") == "ticket"
    first()
    first()
    assert slots.held_by("phone") == 1 and slots.in_use == 2
    assert refusal(slots, "laptop", "t1") is None


def test_the_reserve_never_exceeds_the_total() -> None:
    limits = SlotLimits.of(total=2, device_reserve=50, per_client=-1, per_ticket=-1)
    assert (limits.device_reserve, limits.per_client, limits.per_ticket) == (2, 0, 0)


def test_connection_counts_cap_each_address_alone() -> None:
    counts = ConnectionCounts(2)
    assert [counts.admit("10.0.0.2") for _ in range(3)] == [True, True, False]
    assert counts.admit("10.0.0.3") and counts.refused == 1
    counts.closed("10.0.0.2")
    assert counts.admit("10.0.0.2") and counts.held_by("10.0.0.2") == 2
    assert all(ConnectionCounts(0).admit("x") for _ in range(100))


# -- live streams -------------------------------------------------------------------------------


@pytest.mark.slow
def test_one_address_holding_ticket_streams_cannot_starve_the_display(tmp_path: Path) -> None:
    # 12 stream slots, no device reserve: only the per-client cap protects the display
    with served(tmp_path, threads=16, stream_reserve=4, device_stream_reserve=0,
                streams_per_client=3, streams_per_ticket=4) as srv:
        held: list[socket.socket] = []
        try:
            mine = [srv.ticket() for _ in range(4)]
            answers = []
            for i in range(12):
                status, sock, problem = stream(
                    srv.port, f"/api/v1/tickets/by-hash/{mine[i % 4].hash}/events", "127.0.0.2")
                answers.append(status)
                if status == 200:
                    held.append(sock)
                else:
                    assert problem["code"] == "rate_limited", problem
                    assert problem["retry_after"].isdigit()
            assert answers.count(200) == 3 and answers.count(429) == 9
            status, sock, problem = stream(srv.port, "/api/v1/events", "127.0.0.3")
            assert status == 200, problem
            held.append(sock)
        finally:
            close_all(held)


@pytest.mark.slow
def test_a_registered_display_gets_a_slot_when_anonymous_ones_are_full(tmp_path: Path) -> None:
    # 8 slots, 2 of them only for registered displays and desks
    with served(tmp_path, threads=12, stream_reserve=4, device_stream_reserve=2,
                streams_per_client=3) as srv:
        held: list[socket.socket] = []
        try:
            for source in ("127.0.0.2", "127.0.0.3"):
                for _ in range(3):
                    status, sock, _ = stream(srv.port, "/api/v1/events", source)
                    assert status == 200
                    held.append(sock)
            status, _, problem = stream(srv.port, "/api/v1/events", "127.0.0.4")
            assert status == 503 and problem["code"] == "streams_full"
            assert problem["retry_after"].isdigit()
            kiosk = srv.device("kiosk")  # a kiosk is no display: no reserve for it
            status, _, _ = stream(srv.port, "/api/v1/events", "127.0.0.4",
                                  {"X-Jonot-Device": kiosk})
            assert status == 503
            display = srv.device("display")
            status, sock, problem = stream(srv.port, "/api/v1/events", "127.0.0.4",
                                           {"X-Jonot-Device": display})
            assert status == 200, problem
            held.append(sock)
            desk = srv.device("desk")  # a desk page's EventSource carries the cookie
            status, sock, problem = stream(srv.port, "/api/v1/events", "127.0.0.4",
                                           {"Cookie": f"jonot_device={desk}"})
            assert status == 200, problem
            held.append(sock)
            status, _, problem = stream(srv.port, "/api/v1/events", "127.0.0.4",
                                        {"X-Jonot-Device": display})
            assert status == 503, "every slot is taken now"
        finally:
            close_all(held)


@pytest.mark.slow
def test_one_ticket_may_have_a_few_streams_open(tmp_path: Path) -> None:
    with served(tmp_path, streams_per_ticket=2) as srv:
        held: list[socket.socket] = []
        try:
            path = f"/api/v1/tickets/by-hash/{srv.ticket().hash}/events"
            for source in ("127.0.0.2", "127.0.0.3"):
                status, sock, _ = stream(srv.port, path, source)
                assert status == 200
                held.append(sock)
            status, _, problem = stream(srv.port, path, "127.0.0.4")
            assert status == 429 and problem["code"] == "rate_limited"
            # another ticket is not affected
            status, sock, _ = stream(
                srv.port, f"/api/v1/tickets/by-hash/{srv.ticket().hash}/events", "127.0.0.4")
            assert status == 200
            held.append(sock)
            held.pop(0).close()  # a tab closes: its slot comes back (at the next heartbeat)
            deadline = time.monotonic() + 5
            while True:
                status, sock, _ = stream(srv.port, path, "127.0.0.4")
                if status == 200:
                    held.append(sock)
                    break
                assert time.monotonic() < deadline, "the closed tab's slot never came back"
                time.sleep(0.1)
        finally:
            close_all(held)


# -- connections ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_idle_connections_of_one_address_do_not_stop_health(tmp_path: Path) -> None:
    with served(tmp_path, connection_limit=40, connections_per_address=8,
                header_timeout_s=30) as srv:
        idle: list[socket.socket] = []
        try:
            for _ in range(60):
                idle.append(connect(srv.port, "127.0.0.2"))
            times = [health_ms(srv.port, "127.0.0.3") for _ in range(5)]
            assert max(times) < 1000, times
            refused = 0
            for sock in idle:
                sock.settimeout(0.05)
                try:
                    data = sock.recv(4096)
                except TimeoutError:
                    continue
                if data.startswith(b"HTTP/1.1 429"):
                    assert b'"code":"rate_limited"' in data and b"Retry-After:" in data
                    refused += 1
            assert refused == 52
            assert srv.server.connections.held_by("127.0.0.2") == 8
        finally:
            close_all(idle)
        deadline = time.monotonic() + 5
        while srv.server.connections.held_by("127.0.0.2") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.server.connections.held_by("127.0.0.2") == 0, "closed ones are not counted"


@pytest.mark.slow
def test_unfinished_headers_are_closed_but_streams_and_slow_bodies_are_not(
        tmp_path: Path) -> None:
    with served(tmp_path, header_timeout_s=1) as srv:
        live = stream(srv.port, "/api/v1/events", "127.0.0.2")
        assert live[0] == 200
        silent = connect(srv.port, "127.0.0.3")
        trickle = connect(srv.port, "127.0.0.3")
        trickle.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        body = json.dumps({"name": "Slow Phone"}).encode()
        slow = connect(srv.port, "127.0.0.4")
        slow.sendall(request_bytes("POST", f"/api/v1/queues/{srv.queue.id}/tickets",
                                   {"Content-Type": "application/json",
                                    "Content-Length": str(len(body))}))
        try:
            t0 = time.monotonic()
            cut = None
            for byte in body:  # a byte every 0.15 s: the body takes ~3 s to arrive
                slow.send(bytes([byte]))
                if cut is None:  # the attacker keeps trickling header bytes
                    try:
                        trickle.send(b"a")
                    except OSError:
                        cut = time.monotonic() - t0
                    else:
                        if closed_by_server(trickle, 0.01):
                            cut = time.monotonic() - t0
                time.sleep(0.15)
            assert time.monotonic() - t0 > 2.5
            status, _, answer = read_problem(slow)
            assert status == 201 and answer["code"] == "A001"
            assert cut is not None and cut < 3, "trickled headers were not cut"
            assert closed_by_server(silent, 0.5), "a silent connection was not closed"
            # the live stream, open ~3 s, still gets its heartbeats
            live[1].settimeout(2)
            got = b""
            while b"keep-alive" not in got:
                chunk = live[1].recv(65536)
                assert chunk, "the live stream was cut"
                got += chunk
        finally:
            close_all([live[1], silent, trickle, slow])


@pytest.mark.slow
@pytest.mark.parametrize("step_days", [3, -3])
def test_a_wall_clock_stepped_by_days_neither_cuts_nor_frees_connections(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step_days: int) -> None:
    """A clinic PC's clock corrected by days (NTP after an outage) changes no timeout.

    The step is simulated by moving ``time.time`` in this process (the server runs in
    a thread here); the monotonic clock, which the timeouts must use, is left alone.
    """
    with served(tmp_path, header_timeout_s=2) as srv:
        waiting = connect(srv.port, "127.0.0.2")
        waiting.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
        until(lambda: srv.server.connections.held_by("127.0.0.2"),
              "the connection accepted before the step", timeout=5)
        time.sleep(0.1)  # ... and its first bytes read
        wall = time.time
        monkeypatch.setattr(time, "time", lambda: wall() + step_days * 86_400)
        slow = connect(srv.port, "127.0.0.3")
        slow.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
        try:
            time.sleep(1.0)  # two maintenance passes, well inside the 2 s header timeout
            waiting.sendall(b"\r\n")
            status, _, answer = read_problem(waiting)
            assert status == 200 and answer["status"] == "ok", "a fresh connection was cut"
            # ... and the header timeout still applies after the step
            assert closed_by_server(slow, 4.0), "the header timeout stopped working"
        finally:
            close_all([waiting, slow])


# -- request bodies ------------------------------------------------------------------------------


def _sent_before_close(sock: socket.socket, limit: int) -> int:
    """Push body bytes until the server's close stops us (or ``limit`` bytes went)."""
    sent = 0
    block = b"x" * 65536
    sock.settimeout(2)
    try:
        while sent < limit:
            sent += sock.send(block)
    except (OSError, TimeoutError):
        pass
    return sent


@pytest.mark.slow
def test_a_declared_100_mb_body_is_refused_on_its_header(tmp_path: Path) -> None:
    with served(tmp_path) as srv, connect(srv.port, "127.0.0.2") as sock:
        t0 = time.monotonic()
        sock.sendall(request_bytes("POST", f"/api/v1/queues/{srv.queue.id}/tickets",
                                   {"Content-Type": "application/json",
                                    "Content-Length": str(100 * 1024 * 1024)}))
        status, headers, problem = read_problem(sock, timeout=3)
        assert time.monotonic() - t0 < 1.5
        assert status == 413 and headers["content-type"] == "application/problem+json"
        assert problem["code"] == "payload_too_large" and str(256 * 1024) in problem["message"]
        assert headers.get("connection") == "close"
        # nothing more is read: the server hung up, so little of the body can be pushed
        assert _sent_before_close(sock, 40 * 1024 * 1024) < 8 * 1024 * 1024


@pytest.mark.slow
def test_a_body_of_exactly_the_limit_reaches_the_app(tmp_path: Path) -> None:
    with served(tmp_path) as srv, connect(srv.port, "127.0.0.2") as sock:
        body = json.dumps({"name": "x" * (256 * 1024 - 12)}).encode()
        assert len(body) == 256 * 1024
        sock.sendall(request_bytes("POST", f"/api/v1/queues/{srv.queue.id}/tickets",
                                   {"Content-Type": "application/json"}, body))
        status, _, problem = read_problem(sock)
        assert status == 422 and problem["code"] == "validation_error"  # the app judged it


@pytest.mark.slow
def test_a_chunked_body_over_the_limit_is_refused(tmp_path: Path) -> None:
    with served(tmp_path) as srv, connect(srv.port, "127.0.0.2") as sock:
        sock.sendall(request_bytes("POST", f"/api/v1/queues/{srv.queue.id}/tickets",
                                   {"Content-Type": "application/json",
                                    "Transfer-Encoding": "chunked"}))
        chunk = b"x" * 16384
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        for _ in range(17):  # 272 KB
            sock.sendall(framed)
        status, _, problem = read_problem(sock, timeout=3)
        assert status == 413 and problem["code"] == "payload_too_large"
        assert _sent_before_close(sock, 40 * 1024 * 1024) < 8 * 1024 * 1024
