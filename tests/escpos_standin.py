"""A receipt printer stand-in: a real TCP listener on 127.0.0.1 that records and parses ESC/POS.

It answers ``DLE EOT`` status queries as an Epson printer does, and can be told
to refuse connections (its port closed), accept and then hang (never read,
never answer), reset the connection part-way through a receipt, report that
its paper is out, and come back on the same port.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

STATUS_OK = 0x16  # DLE EOT 1: online, fixed bits set
PAPER_OK = 0x12  # DLE EOT 4: paper present
PAPER_OUT = 0x72  # DLE EOT 4: roll empty (bits 5 and 6)
CODE_PAGES = {0: "cp437", 2: "cp850", 16: "cp1252", 19: "cp858"}


@dataclass
class Parsed:
    """What a receipt's bytes say."""

    lines: list[str] = field(default_factory=list)  # text lines, decoded with the code page
    big: list[str] = field(default_factory=list)  # lines printed at 2x2 size or larger
    qr_payloads: list[str] = field(default_factory=list)  # GS ( k store-data (fn 80)
    qr_printed: int = 0  # GS ( k print (fn 81)
    images: int = 0  # GS v 0 raster images
    cuts: int = 0  # GS V
    code_pages: list[int] = field(default_factory=list)  # ESC t n
    status_queries: int = 0  # DLE EOT

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


_ONE_ARG_ESC = set(b"!EatdJ-MG{3V") | {0x21}
_ONE_ARG_GS = set(b"!BbHhwfLW")


def parse(data: bytes) -> Parsed:
    """Tokenise ESC/POS bytes into text lines, QR payloads, images and cuts.

    Knows the commands python-escpos emits for receipts; anything else below 0x20
    is skipped as one byte.
    """
    out = Parsed()
    page, size, line = 0, 0, bytearray()
    line_big = False
    i, n = 0, len(data)

    def end_line() -> None:
        nonlocal line, line_big
        text = bytes(line).decode(CODE_PAGES.get(page, "cp437"), errors="replace")
        out.lines.append(text)
        if line_big and text.strip():
            out.big.append(text.strip())
        line, line_big = bytearray(), False

    while i < n:
        b = data[i]
        if b == 0x1B and i + 1 < n:  # ESC
            cmd = data[i + 1]
            if cmd in (0x40, 0x32):  # ESC @, ESC 2
                i += 2
            elif cmd == ord("!"):  # ESC ! n also sets the size; the last size command wins
                mode = data[i + 2]
                size = (0x10 if mode & 0x20 else 0) | (0x01 if mode & 0x10 else 0)
                i += 3
            elif cmd == ord("t"):
                page = data[i + 2]
                out.code_pages.append(page)
                i += 3
            elif cmd in _ONE_ARG_ESC:
                i += 3
            else:
                i += 2
        elif b == 0x1D and i + 1 < n:  # GS
            cmd = data[i + 1]
            if cmd == ord("!"):
                size = data[i + 2]
                i += 3
            elif cmd == ord("V"):
                out.cuts += 1
                i += 4 if data[i + 2] in (65, 66, 97, 98, 103, 104) else 3
            elif cmd == ord("(") and data[i + 2] == ord("k"):
                length = data[i + 3] + 256 * data[i + 4]
                body = data[i + 5:i + 5 + length]
                if body[:2] == b"1P":  # cn 49 (QR), fn 80: store the data, after m
                    out.qr_payloads.append(body[3:].decode("latin-1"))
                elif body[:2] == b"1Q":
                    out.qr_printed += 1
                i += 5 + length
            elif cmd == ord("v") and data[i + 2] == ord("0"):
                xl, xh, yl, yh = data[i + 4:i + 8]
                out.images += 1
                i += 8 + (xl + 256 * xh) * (yl + 256 * yh)
            elif cmd in _ONE_ARG_GS:
                i += 4 if cmd in (ord("L"), ord("W")) else 3
            else:
                i += 2
        elif b == 0x10 and i + 2 < n and data[i + 1] == 0x04:  # DLE EOT n
            out.status_queries += 1
            i += 3
        elif b == 0x0A:
            end_line()
            i += 1
        elif b < 0x20:
            i += 1
        else:
            line.append(b)
            # GS ! n: high nibble width-1, low nibble height-1; 2x2 or more is "big".
            if (size >> 4) >= 1 and (size & 0x0F) >= 1:
                line_big = True
            i += 1
    if line:
        end_line()
    return out


class EscposStandin:
    """A TCP printer on 127.0.0.1 (random port). ``mode``: ok, hang, reset, no_paper, mute."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.reset_after = 40  # bytes read before a reset
        self.receipts: list[bytes] = []  # the bytes of each finished connection with a cut
        self.cut_times: list[float] = []  # time.monotonic() when each cut arrived
        self.connections = 0
        self._cond = threading.Condition()
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._held: list[socket.socket] = []
        self.port = 0
        self._listen()

    # -- control -----------------------------------------------------------------------

    @property
    def uri(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def refuse(self) -> None:
        """Close the port: connections are refused, as by a printer that is off."""
        if self._listener is not None:
            # shutdown first: a close alone leaves the port listening while accept() blocks.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None

    def come_back(self, mode: str = "ok") -> None:
        """Listen again on the same port (a printer switched back on)."""
        self.mode = mode
        if self._listener is None:
            self._listen(self.port)

    def close(self) -> None:
        self._stopping.set()
        self.refuse()
        for s in self._held:
            with contextlib.suppress(OSError):
                s.close()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[bytes]:
        """Block until ``count`` receipts have arrived; returns them (AssertionError if not)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.receipts) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.receipts)} receipt(s) arrived, "
                                         f"expected {count}")
                self._cond.wait(left)
            return list(self.receipts)

    # -- inside ------------------------------------------------------------------------

    def _listen(self, port: int = 0) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(16)
        self.port = sock.getsockname()[1]
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), name="escpos-standin",
                         daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.mode == "hang":
                self._held.append(conn)  # accepted, never read, never answered
                continue
            threading.Thread(target=self._serve, args=(conn, self.mode), daemon=True).start()

    def _serve(self, conn: socket.socket, mode: str) -> None:
        buf = bytearray()
        conn.settimeout(10)
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                start = len(buf)
                buf += chunk
                if mode == "reset" and len(buf) >= self.reset_after:
                    # RST instead of FIN: the client sees "connection reset".
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
                    conn.close()
                    return
                if b"\x1dV" in buf[max(0, start - 1):]:
                    with self._cond:
                        self.cut_times.append(time.monotonic())
                self._answer(conn, bytes(buf[max(0, start - 2):]), mode)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()
        if b"\x1dV" in buf:
            with self._cond:
                self.receipts.append(bytes(buf))
                self._cond.notify_all()

    @staticmethod
    def _answer(conn: socket.socket, recent: bytes, mode: str) -> None:
        if mode == "mute":
            return
        at = recent.find(b"\x10\x04")
        while at != -1 and at + 2 < len(recent):
            what = recent[at + 2]
            if what == 4:
                conn.sendall(bytes([PAPER_OUT if mode == "no_paper" else PAPER_OK]))
            else:
                conn.sendall(bytes([STATUS_OK]))
            at = recent.find(b"\x10\x04", at + 3)
