"""waitress, guarded against one client holding the server: connections, headers, bodies.

Three rules at the connection level, before a request reaches the app:

- **Connections per address.** Each socket peer address may hold at most
  ``per_address`` open connections; a connection beyond is answered at once
  with a short 429 ``rate_limited`` (problem JSON, ``Retry-After``) and closed,
  so other clients keep being served. At accept time there are no headers yet,
  so a registered desk PC counts like anyone: the cap is sized for a PC with
  several browser tabs and their streams (a browser opens at most six
  connections to one server). Behind trusted proxies every connection comes
  from the proxy: the cap is off there (the proxy must do it).
- **Header read timeout.** A connection must complete a request's headers
  within ``header_timeout_s`` of opening, or of the end of its previous
  response; otherwise it is closed (a byte every few seconds no longer keeps
  it). A request being served (a live stream), a response still being sent
  and a body being received are never cut by this rule; waitress's own
  ``channel_timeout`` still closes connections idle for long.
- **Request bodies.** waitress refuses a body over ``max_request_body_size``
  on its ``Content-Length`` header, before reading it (a chunked body as soon
  as it grows past the limit), answering 413 ``payload_too_large``. Every
  error waitress answers itself is problem JSON, like the app's.

Both timeouts are measured on the monotonic clock: a clinic PC whose wall
clock is stepped by days (NTP catching up after an outage, a CMOS battery)
neither closes every connection at once nor stops checking for days.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher

CONNECTION_RETRY_AFTER_S = 5
ACCEPT_BATCH = 128  # connections accepted per turn of the event loop

# waitress's own error statuses, named as the app names them (see api/errors.py)
_CODES = {400: "bad_request", 413: "payload_too_large",
          431: "request_header_fields_too_large", 500: "internal_error",
          501: "not_implemented"}
_MESSAGES = {
    400: "The request is malformed: {detail}.",
    413: "The request body is too large: at most {limit} bytes are accepted.",
    431: "The request headers are too large.",
    501: "This transfer encoding is not supported.",
}


def problem_body(status: int, code: str, message: str, **extra: Any) -> bytes:
    """A problem+json body of the same shape as the app's (``api.errors.problem``)."""
    body = {"type": f"https://jonot.local/problems/{code}",
            "title": code.replace("_", " ").capitalize(), "status": status, "code": code,
            "message": message, "detail": message, **extra}
    return json.dumps(body, separators=(",", ":")).encode()


class ConnectionCounts:
    """Open connections per peer address, with a cap (0: none). Thread-safe."""

    def __init__(self, per_address: int) -> None:
        self.per_address = max(0, per_address)
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()
        self.refused = 0

    def admit(self, address: str) -> bool:
        """Count a new connection from ``address``; ``False`` (not counted) when over the cap."""
        with self._lock:
            held = self._open.get(address, 0)
            if self.per_address and held >= self.per_address:
                self.refused += 1
                return False
            self._open[address] = held + 1
            return True

    def closed(self, address: str) -> None:
        with self._lock:
            left = self._open.get(address, 0) - 1
            if left > 0:
                self._open[address] = left
            else:
                self._open.pop(address, None)

    def held_by(self, address: str) -> int:
        return self._open.get(address, 0)


class ProblemErrorTask(ErrorTask):
    """waitress's error response (400, 413, 431, 501…) as problem JSON."""

    def execute(self) -> None:
        err = self.request.error
        status = int(err.code)
        code = _CODES.get(status, "http_error")
        limit = self.channel.adj.max_request_body_size - 1
        detail = str(getattr(err, "body", "") or err.reason).strip()
        message = _MESSAGES.get(status, err.reason + ".").format(detail=detail, limit=limit)
        body = problem_body(status, code, message)
        self.status = f"{status} {err.reason}"
        self.response_headers.append(("Content-Type", "application/problem+json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class GuardedParser(HTTPRequestParser):
    """waitress's parser, but a refused request never invites its body (no 100 Continue)."""

    def received(self, data: bytes) -> int:
        consumed = int(super().received(data))
        if self.error is not None:
            self.expect_continue = False
        return consumed


class GuardedChannel(HTTPChannel):
    """A connection that counts against its address and must send headers in time."""

    error_task_class = ProblemErrorTask
    parser_class = GuardedParser
    counted_as: str | None = None
    _last_activity = 0.0

    def __init__(self, server: Any, sock: socket.socket, addr: Any, adj: Adjustments,
                 map: Any = None) -> None:  # noqa: A002 - waitress's signature
        self._serving = False
        super().__init__(server, sock, addr, adj, map=map)
        self.idle_since: float = time.monotonic()

    @property
    def last_activity(self) -> float:
        """When the connection last read or wrote, on the monotonic clock."""
        return self._last_activity

    @last_activity.setter
    def last_activity(self, _wall_time: float) -> None:
        # waitress stores time.time() here; the moment is kept monotonic instead.
        self._last_activity = time.monotonic()

    def service(self) -> None:
        self._serving = True
        try:
            super().service()
        finally:
            self.idle_since = time.monotonic()
            self._serving = False

    def headers_overdue(self, now: float, timeout: float) -> bool:
        """Whether this connection has waited longer than ``timeout`` for request headers.

        ``now`` is ``time.monotonic()``.

        Busy connections (a request queued or running, a response not yet sent,
        a body arriving) are never overdue; their clock restarts when they go idle.
        """
        request = self.request
        busy = (self._serving or self.requests or self.total_outbufs_len
                or (request is not None and request.headers_finished))
        if busy:
            self.idle_since = now
            return False
        return now - self.idle_since > timeout

    def del_channel(self, map: Any = None) -> None:  # noqa: A002
        counted, self.counted_as = self.counted_as, None
        if counted is not None:
            self.server.connections.closed(counted)
        super().del_channel(map)


class GuardedServer(TcpWSGIServer):
    """waitress's TCP server with the per-address cap and the header timeout."""

    channel_class = GuardedChannel

    def __init__(self, *args: Any, connections: ConnectionCounts, header_timeout_s: float,
                 **kw: Any) -> None:
        self.connections = connections
        self.header_timeout_s = header_timeout_s
        status = 429
        body = problem_body(status, "rate_limited",
                            "This address has too many open connections to the server; "
                            f"close some, or try again in {CONNECTION_RETRY_AFTER_S} s.")
        self._refusal = (f"HTTP/1.1 {status} Too Many Requests\r\n"
                         "Content-Type: application/problem+json\r\n"
                         f"Retry-After: {CONNECTION_RETRY_AFTER_S}\r\nConnection: close\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        super().__init__(*args, **kw)
        self._next_cleanup = 0.0
        self.next_channel_cleanup = math.inf  # waitress's wall-clock pass, replaced below

    def readable(self) -> bool:
        """waitress's check, with the maintenance pass timed on the monotonic clock."""
        now = time.monotonic()
        if now >= self._next_cleanup:
            self._next_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        return bool(super().readable())

    def handle_accept(self) -> None:
        """Accept what waits, up to ``ACCEPT_BATCH`` connections per loop turn.

        waitress accepts one per turn, so a burst of one client's connections
        would queue everyone else's behind it for hundreds of milliseconds;
        refusing one over the cap costs a send and a close.
        """
        for _ in range(ACCEPT_BATCH):
            if len(self._map) >= self.adj.connection_limit or not self._accept_one():
                return

    def _accept_one(self) -> bool:
        """Accept one connection; ``False`` when none was waiting."""
        try:
            accepted = self.accept()
            if accepted is None:
                return False
            conn, addr = accepted
            self.set_socket_options(conn)
        except OSError:
            return False  # the peer left before we got to it (as waitress does)
        addr = self.fix_addr(addr)
        host = str(addr[0]) if isinstance(addr, tuple) and addr else str(addr)
        if not self.connections.admit(host):
            self._refuse(conn)
            return True
        try:
            channel = self.channel_class(self, conn, addr, self.adj, map=self._map)
        except OSError:
            self.connections.closed(host)
            conn.close()
            return True
        channel.counted_as = host
        return True

    def _refuse(self, conn: socket.socket) -> None:
        """Answer 429 and close, without waiting on the client."""
        try:
            conn.setblocking(False)
            conn.send(self._refusal)
        except OSError:
            pass
        finally:
            conn.close()

    def maintenance(self, now: float) -> None:
        """Close idle connections and those overdue with headers; ``now``: monotonic."""
        super().maintenance(now)
        if self.header_timeout_s <= 0:
            return
        for channel in list(self.active_channels.values()):
            if isinstance(channel, GuardedChannel) and \
                    channel.headers_overdue(now, self.header_timeout_s):
                channel.will_close = True


def create_guarded_server(app: Any, *, connections_per_address: int, header_timeout_s: float,
                          **kw: Any) -> Any:
    """Like ``waitress.create_server`` (TCP), with the guards above; ``kw``: waitress's options.

    The maintenance pass (which also applies the header timeout) runs often
    enough for the timeout to be kept within about a second.
    """
    if header_timeout_s > 0:
        kw.setdefault("cleanup_interval", max(0.25, min(30.0, header_timeout_s / 4)))
    adj = Adjustments(**kw)
    sockets_map: dict[int, Any] = {}
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    counts = ConnectionCounts(connections_per_address)
    servers = [GuardedServer(app, sockets_map, dispatcher=dispatcher, adj=adj, sockinfo=info,
                             connections=counts, header_timeout_s=header_timeout_s)
               for info in adj.listen]
    if len(servers) == 1:
        return servers[0]
    return MultiSocketServer(sockets_map, adj, [(s.effective_host, s.effective_port)
                                                for s in servers], dispatcher,
                             servers[-1].log_info)
