"""Printer URIs and sending bytes to a printer, every step bounded in time.

``tcp://HOST[:PORT]`` (port 9100 by default) is a raw socket; ``usb://VID:PID``
(hexadecimal ids, as ``lsusb`` shows them) goes through python-escpos's USB
printer (pyusb, libusb). Over TCP the printer's real-time status is asked with
``DLE EOT`` before the receipt (paper present?) and after it (did the printer
take it all?): without such an answer a printer that accepted the connection
and then hung would look like one that printed, because a receipt fits in the
socket's buffers. Printers that do not answer ``DLE EOT`` need the status
query turned off (``JONOT_PRINTER_STATUS=off``); then a hung printer is only
noticed when a write blocks, and paper-out is not seen at all.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_TCP_PORT = 9100
DLE_EOT_PRINTER = b"\x10\x04\x01"  # printer status
DLE_EOT_PAPER = b"\x10\x04\x04"  # roll paper sensor status
PAPER_END_BITS = 0x60  # bits 5 and 6 of the paper sensor status: roll empty


class PrinterError(Exception):
    """Printing failed; ``kind`` says how (refused, timeout, reset, no_paper, unreachable,
    usb), the message says it for people."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class PrinterTarget:
    """A parsed printer URI."""

    uri: str
    scheme: str  # "tcp" or "usb"
    host: str = ""
    port: int = DEFAULT_TCP_PORT
    vendor_id: int = 0
    product_id: int = 0


def parse_uri(uri: str) -> PrinterTarget:
    """Parse ``tcp://host[:port]`` or ``usb://VID:PID``. Raises ``ValueError`` saying why."""
    text = (uri or "").strip()
    parts = urlsplit(text)
    if parts.scheme == "tcp":
        try:
            port = parts.port or DEFAULT_TCP_PORT
        except ValueError:
            raise ValueError(f"{text!r}: the port must be a number from 1 to 65535") from None
        if not parts.hostname or parts.path not in ("", "/") or parts.query:
            raise ValueError(f"{text!r}: write tcp://HOST:PORT, e.g. tcp://192.0.2.10:9100")
        return PrinterTarget(uri=text, scheme="tcp", host=parts.hostname, port=port)
    if parts.scheme == "usb":
        vid, sep, pid = parts.netloc.partition(":")
        try:
            if not sep or parts.path not in ("", "/"):
                raise ValueError
            vendor, product = int(vid, 16), int(pid, 16)
            if not (0 <= vendor <= 0xFFFF and 0 <= product <= 0xFFFF):
                raise ValueError
        except ValueError:
            raise ValueError(f"{text!r}: write usb://VID:PID with hexadecimal ids, "
                             "e.g. usb://04b8:0202") from None
        return PrinterTarget(uri=text, scheme="usb", vendor_id=vendor, product_id=product)
    raise ValueError(f"{text!r} is not a printer URI (tcp://HOST:PORT or usb://VID:PID)")


def send(target: PrinterTarget, data: bytes, *, timeout: float, status: bool = True) -> None:
    """Send ``data`` to the printer; each connect, write and read waits at most ``timeout``.

    Raises ``PrinterError``; returns once the printer has taken every byte
    (with ``status``: once it has answered the status query sent after them).
    """
    if target.scheme == "usb":
        _send_usb(target, data, timeout)
    else:
        _send_tcp(target, data, timeout, status)


def _send_tcp(target: PrinterTarget, data: bytes, timeout: float, status: bool) -> None:
    where = f"{target.host}:{target.port}"
    try:
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
    except ConnectionRefusedError:
        raise PrinterError("refused", f"{where} refused the connection (printer off, or "
                           "another port?)") from None
    except TimeoutError:
        raise PrinterError("timeout", f"{where} did not answer within {timeout:g} s "
                           "(unplugged, or a wrong address?)") from None
    except OSError as exc:
        raise PrinterError("unreachable", f"{where}: {exc.strerror or exc}") from None
    with contextlib.closing(sock):
        sock.settimeout(timeout)
        step = "sending the receipt"
        try:
            if status:
                step = "waiting for its paper status"
                sock.sendall(DLE_EOT_PAPER)
                answer = _read_byte(sock)
                if answer & PAPER_END_BITS:
                    raise PrinterError("no_paper", f"{where} is out of paper")
                step = "sending the receipt"
            sock.sendall(data)
            if status:
                step = "waiting for it to take the receipt"
                sock.sendall(DLE_EOT_PRINTER)
                _read_byte(sock)
        except TimeoutError:
            raise PrinterError("timeout", f"{where} stopped answering while {step} "
                               f"(no reply in {timeout:g} s)") from None
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            raise PrinterError("reset", f"{where} dropped the connection while {step}") \
                from None
        except OSError as exc:
            raise PrinterError("unreachable", f"{where}: {exc.strerror or exc} while "
                               f"{step}") from None


def _read_byte(sock: socket.socket) -> int:
    got = sock.recv(1)
    if not got:
        raise ConnectionResetError
    return got[0]


def _send_usb(target: PrinterTarget, data: bytes, timeout: float) -> None:
    try:
        from escpos.printer import Usb
    except ImportError:  # pragma: no cover - python-escpos is a dependency
        raise PrinterError("usb", "USB printing needs python-escpos with pyusb") from None
    try:
        printer = Usb(target.vendor_id, target.product_id, timeout=int(timeout * 1000))
        printer.open()
    except Exception as exc:  # pyusb and libusb raise many kinds; all mean "not there"
        raise PrinterError("usb", f"USB printer {target.vendor_id:04x}:{target.product_id:04x} "
                           f"not usable: {exc}") from None
    try:
        printer._raw(data)
    except Exception as exc:
        raise PrinterError("usb", f"USB printer {target.vendor_id:04x}:"
                           f"{target.product_id:04x} failed while printing: {exc}") from None
    finally:
        with contextlib.suppress(Exception):
            printer.close()
