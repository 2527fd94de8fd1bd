"""An HTTP chaos proxy on loopback, between an office's sync worker and the cloud.

Real sockets, a thread per connection. Each request to a sync path (the office's
client sends one request a connection) meets, with probability ``rate``, one fault:

- ``drop_request``: the connection is closed, the cloud never sees the request;
- ``drop_response``: the cloud applies it, its answer is lost;
- ``duplicate``: the cloud gets it twice (the second copy a little later);
- ``delay_request`` / ``delay_response``: held 50–500 ms on the way;
- ``reorder``: the office's copy is lost and the request reaches the cloud
  0.2–1.5 s later, after newer ones (a late replay);
- ``cut_request``: half its body reaches the cloud, then both sides are cut;
- ``cut_response``: the answer's head and half its body reach the office, then
  the connection is cut (``http.client.IncompleteRead``);
- ``stall``: the cloud applies it, the answer is held ``stall_s`` (longer than
  the office's timeout) and then dropped.

Decisions come from one ``random.Random(seed)``, drawn in the order requests
arrive; the seed is printed (``JONOT_CHAOS_SEED=…`` replays it). Thread timing
still varies between runs, so a replay repeats the faults' sequence, not every
interleaving. ``force`` queues faults for the next requests (unit tests).
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
from collections import Counter, deque

FAULTS = ("drop_request", "drop_response", "duplicate", "delay_request", "delay_response",
          "reorder", "cut_request", "cut_response", "stall")
#: How often each fault is drawn, relatively: a stall holds its sender for a whole
#: timeout, so it comes a quarter as often as the others.
WEIGHTS = tuple(0.25 if f == "stall" else 1.0 for f in FAULTS)


def _read_message(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """One HTTP message (head, body) by ``Content-Length``, or to the end; ``None`` if cut."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None and head.startswith(b"HTTP/"):
        while chunk := sock.recv(65536):  # an answer without a length: to the end
            body += chunk
        return head + b"\r\n\r\n", body
    while len(body) < (length or 0):
        chunk = sock.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head + b"\r\n\r\n", body


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            s.close()


class ChaosProxy:
    """``url`` forwards to ``127.0.0.1:target_port`` with faults on paths under ``prefix``."""

    def __init__(self, target_port: int, rate: float = 0.3, seed: int | None = None,
                 prefix: bytes = b"/api/v1/sync/", stall_s: float = 4.0) -> None:
        if seed is None:
            env = os.environ.get("JONOT_CHAOS_SEED")
            seed = int(env) if env else random.SystemRandom().randrange(2**32)
        self.seed = seed
        self.target_port = target_port
        self.rate = rate
        self.prefix = prefix
        self.stall_s = stall_s
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.forced: deque[str | None] = deque()
        self._lock = threading.Lock()
        self._late: list[threading.Event] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept, name="chaos-accept", daemon=True)
        print(f"chaos proxy: seed {seed} (replay with JONOT_CHAOS_SEED={seed}), "
              f"fault rate {rate:.0%}", flush=True)

    def start(self) -> ChaosProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        _close(self._listener)
        self.calm()

    def force(self, *faults: str | None) -> None:
        """The next requests meet these faults (``None``: none), before any drawn ones."""
        with self._lock:
            self.forced.extend(faults)

    def calm(self, timeout: float = 10.0) -> None:
        """No more faults; returns once the late copies still on their way were sent."""
        with self._lock:
            self.rate = 0.0
            self.forced.clear()
            late = list(self._late)
        deadline = time.monotonic() + timeout
        for sent in late:
            sent.wait(max(0.0, deadline - time.monotonic()))

    def summary(self) -> str:
        total = self.counts["requests"]
        faults = sum(self.counts[f] for f in FAULTS)
        kinds = ", ".join(f"{f} {self.counts[f]}" for f in FAULTS)
        return (f"chaos proxy seed {self.seed}: {total} sync requests, {faults} faults "
                f"({faults / max(1, total):.0%}): {kinds}")

    # -- serving ---------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), name="chaos-conn",
                             daemon=True).start()

    def _decide(self, head: bytes) -> tuple[str | None, float]:
        request_line = head.split(b"\r\n", 1)[0]
        if self.prefix not in request_line:
            return None, 0.0
        with self._lock:
            self.counts["requests"] += 1
            if self.forced:
                fault = self.forced.popleft()
            elif self.rate and self.rng.random() < self.rate:
                fault = self.rng.choices(FAULTS, weights=WEIGHTS)[0]
            else:
                fault = None
            delay = self.rng.uniform(0.2, 1.5) if fault == "reorder" \
                else self.rng.uniform(0.05, 0.5)
            if fault:
                self.counts[fault] += 1
        return fault, delay

    def _forward(self, request: bytes, sent: threading.Event | None = None
                 ) -> tuple[bytes, bytes] | None:
        """The request sent to the cloud on a connection of its own; the answer, or
        ``None`` when the cloud could not be reached or cut the connection. ``sent`` is
        set once the request is out (or could not be)."""
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=90)
        except OSError:
            if sent is not None:
                sent.set()
            return None
        try:
            upstream.sendall(request)
            if sent is not None:
                sent.set()
            return _read_message(upstream)
        except OSError:
            return None
        finally:
            _close(upstream)

    def _later(self, request: bytes, delay: float) -> None:
        sent = threading.Event()

        def deliver() -> None:
            try:
                time.sleep(delay)
                self._forward(request, sent)
            finally:
                sent.set()

        with self._lock:
            self._late = [e for e in self._late if not e.is_set()] + [sent]
        threading.Thread(target=deliver, name="chaos-late", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            client.settimeout(90)
            message = _read_message(client)
            if message is None:
                return
            head, body = message
            request = head + body
            fault, delay = self._decide(head)
            if fault == "drop_request":
                return
            if fault == "reorder":
                self._later(request, delay)
                return
            if fault == "cut_request":
                with contextlib.suppress(OSError):
                    upstream = socket.create_connection(("127.0.0.1", self.target_port), 5)
                    upstream.sendall(head + body[:len(body) // 2])
                    time.sleep(0.05)
                    _close(upstream)
                return
            if fault == "delay_request":
                time.sleep(delay)
            if fault == "duplicate":
                self._later(request, delay / 2)
            answer = self._forward(request)
            if answer is None or fault == "drop_response":
                return
            answer_head, answer_body = answer
            if fault == "delay_response":
                time.sleep(delay)
            if fault == "stall":
                time.sleep(self.stall_s)
                return
            if fault == "cut_response":
                client.sendall(answer_head + answer_body[:len(answer_body) // 2])
                return
            client.sendall(answer_head + answer_body)
        except OSError:
            pass
        finally:
            _close(client)
