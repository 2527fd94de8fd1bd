"""The print queue: kiosk receipts printed by one named daemon thread, never on the request path.

``PrintService.print_ticket`` only puts a job on a bounded queue (it never
blocks: when the queue is full the receipt is dropped and counted). The thread
``jonot-printer`` renders and sends each job, every network step bounded by
``printer_timeout_s``. A failed job is tried again up to ``printer_attempts``
times; a job older than ``printer_max_age_s`` is dropped instead, because a
receipt printed minutes late — handed to whoever stands at the kiosk then — is
worse than none (the ticket is on the kiosk's screen with its QR code anyway).

A printer's failure is logged once per outage (when it starts failing) and
once when it works again, with how many receipts were lost meanwhile; its
state (last success, last error, queue length) is kept for admin and health.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..timeutil import parse_iso, utcnow, utcnow_iso
from .printer import PrinterError, parse_uri, send
from .receipt import (
    LANGUAGES,
    QR_MODES,
    Receipt,
    build_receipt,
    build_test_page,
    wait_minutes,
)

log = logging.getLogger("jonot_local.printing")

THREAD_NAME = "jonot-printer"


@dataclass
class PrinterState:
    """What is known of one printer since the server started."""

    uri: str
    state: str = "unknown"  # unknown (nothing sent yet), ok, failing
    last_ok_at: str | None = None
    last_error: str | None = None
    last_error_kind: str | None = None
    last_error_at: str | None = None
    failing_since: str | None = None
    printed: int = 0
    failed: int = 0  # receipts given up on (after the last try, or too old, or queue full)
    queued: int = 0
    _lost_in_outage: int = 0
    _failing_mono: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


@dataclass
class Job:
    uri: str
    render: Callable[[], bytes]
    label: str
    created: float
    attempts: int = 0
    done: threading.Event | None = None
    ok: bool = False
    error: str | None = None
    size: int = 0
    sent_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class PrintService:
    """The kiosk printers of one app: a bounded job queue and the thread that prints."""

    name = THREAD_NAME

    def __init__(self, default_uri: str = "", *, timeout: float = 4.0, status: bool = True,
                 qr: str = "native", profile: str = "TM-T20II", language: str = "en",
                 max_age_s: float = 60.0, attempts: int = 3, queue_size: int = 32,
                 retry_delay_s: float = 1.0, lan_urls: bool = False,
                 clinic_name: Callable[[], str] = lambda: "") -> None:
        self.default_uri = (default_uri or "").strip()
        if self.default_uri:
            try:  # a bad URI is refused at start, not at the first ticket
                parse_uri(self.default_uri)
            except ValueError as exc:
                raise ValueError(f"JONOT_PRINTER: {exc}") from None
        if qr not in QR_MODES:
            raise ValueError(f"JONOT_PRINTER_QR: {qr!r} is not one of {', '.join(QR_MODES)}")
        if language not in LANGUAGES:
            raise ValueError(f"JONOT_RECEIPT_LANGUAGE: {language!r} is not one of "
                             f"{', '.join(LANGUAGES)}")
        self.timeout = timeout
        self.status = status
        self.qr = qr
        self.profile = profile
        self.language = language
        self.max_age_s = max_age_s
        self.attempts = max(1, attempts)
        self.retry_delay_s = retry_delay_s
        self.clinic_name = clinic_name
        # Serving on every interface: a loopback ticket URL is printed with the LAN address.
        self.lan_urls = lan_urls
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max(1, queue_size))
        self._states: dict[str, PrinterState] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_job: Job | None = None  # the newest finished job (for tests and figures)

    # -- submitting (request threads) -------------------------------------------------

    def printer_for(self, device: dict[str, Any] | None) -> str:
        """The printer of this kiosk device: its own, else the default ('' when none)."""
        own = (device or {}).get("printer") or ""
        return own or self.default_uri

    def print_ticket(self, ticket: dict[str, Any], device: dict[str, Any] | None = None) -> bool:
        """Queue the receipt of a just-joined kiosk ticket (the join's response data).

        Never blocks and never raises for printer trouble; returns whether a job
        was queued (False: no printer for this kiosk, or the queue is full).
        """
        uri = self.printer_for(device)
        if not uri:
            return False
        snapshot = dict(ticket)

        def render() -> bytes:
            return build_receipt(self._receipt(snapshot), qr=self.qr, profile=self.profile,
                                 language=self.language)

        return self._submit(Job(uri=uri, render=render, label=str(snapshot.get("code")),
                                created=time.monotonic()))

    def test_print(self, uri: str | None = None, wait_s: float | None = None) -> dict[str, Any]:
        """Print a test page on ``uri`` (default: the default printer) and wait for the result.

        Returns ``{"uri", "printed", "error"}`` plus the printer's state. Raises
        ``ValueError`` when there is no printer or the URI is not one.
        """
        uri = (uri or self.default_uri).strip()
        if not uri:
            raise ValueError("no printer is set (JONOT_PRINTER, serve --printer, or a kiosk's "
                             "own printer)")
        parse_uri(uri)
        if not self.running:
            return {"uri": uri, "printed": False, "error": "the print queue is not running "
                    "(it runs while jonot-local serve does)", "state": self.state_of(uri)}
        now = datetime.now().astimezone()
        job = Job(uri=uri, label="test page", created=time.monotonic(),
                  done=threading.Event(),
                  render=lambda: build_test_page(self.clinic_name(), uri, now, qr=self.qr,
                                                 profile=self.profile, language=self.language))
        wait_s = self.timeout * 3 + 2 if wait_s is None else wait_s
        if not self._submit(job):
            return {"uri": uri, "printed": False, "error": "the print queue is full",
                    "state": self.state_of(uri)}
        assert job.done is not None
        if not job.done.wait(wait_s):
            return {"uri": uri, "printed": False,
                    "error": "still waiting: receipts ahead of it, or the printer is slow",
                    "state": self.state_of(uri)}
        return {"uri": uri, "printed": job.ok, "error": job.error, "state": self.state_of(uri)}

    def _submit(self, job: Job) -> bool:
        state = self._state(job.uri)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            with self._lock:
                state.failed += 1
            log.debug("print queue full; receipt %s for %s dropped", job.label, job.uri)
            return False
        with self._lock:
            state.queued += 1
        return True

    def _receipt(self, t: dict[str, Any]) -> Receipt:
        try:
            issued = parse_iso(t["created_at"]) if t.get("created_at") else utcnow()
        except ValueError:
            issued = utcnow()
        position = t.get("position")
        return Receipt(
            clinic=self.clinic_name(),
            queue=str(t.get("queue_name") or ""),
            code=str(t.get("code") or ""),
            # The office's time zone is the server machine's local time zone.
            issued_at=issued.astimezone(),
            people_ahead=position - 1 if isinstance(position, int) else None,
            wait_minutes=wait_minutes(t.get("estimated_wait_s")),
            url=(reachable_url(str(t.get("url") or "")) if self.lan_urls
                 else str(t.get("url") or "")),
            cloud_url=str(t["cloud_url"]) if t.get("cloud_url") else None,
        )

    # -- state (any thread) ------------------------------------------------------------

    def _state(self, uri: str) -> PrinterState:
        with self._lock:
            if uri not in self._states:
                self._states[uri] = PrinterState(uri=uri)
            return self._states[uri]

    def state_of(self, uri: str) -> dict[str, Any]:
        """One printer's state as a dict."""
        with self._lock:
            found = self._states.get(uri) or PrinterState(uri=uri)
            return found.as_dict()

    def states(self, extra_uris: list[str] = ()) -> list[dict[str, Any]]:  # type: ignore[assignment]
        """Every known printer's state: the default, the kiosks' own, and any used so far."""
        uris = [u for u in [self.default_uri, *extra_uris] if u]
        with self._lock:
            uris += [u for u in self._states if u not in uris]
        return [self.state_of(u) for u in dict.fromkeys(uris)]

    @property
    def queue_length(self) -> int:
        return self._queue.qsize()

    def summary(self) -> dict[str, Any]:
        """For health: whether printing is set, the worst state, the queue length."""
        known = self.states()
        worst = "off"
        if known:
            order = {"failing": 2, "unknown": 1, "ok": 0}
            worst = max((s["state"] for s in known), key=lambda s: order.get(s, 0))
        return {"state": worst, "printers": len(known), "queue": self.queue_length,
                "running": self.running}

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the thread --------------------------------------------------------------------

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        # When the queue is full the thread sees the stop event within its poll interval.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if job is None:
                break
            try:
                self._print(job)
            except Exception:  # a bug in rendering must not end the thread
                log.exception("printing %s failed unexpectedly", job.label)
                self._finish(job, False, "internal error")

    def _print(self, job: Job) -> None:
        target = parse_uri(job.uri)
        data: bytes | None = None
        while True:
            if time.monotonic() - job.created > self.max_age_s:
                log.info("receipt %s for %s dropped: not printed within %g s", job.label,
                         job.uri, self.max_age_s)
                self._finish(job, False, f"not printed within {self.max_age_s:g} s")
                return
            if data is None:
                data = job.render()
                job.size = len(data)
            job.attempts += 1
            try:
                send(target, data, timeout=self.timeout, status=self.status)
            except PrinterError as exc:
                self._failed(job.uri, exc)
                if job.attempts >= self.attempts:
                    self._finish(job, False, str(exc))
                    return
                if self._stop.wait(self.retry_delay_s):
                    self._finish(job, False, "server stopping")
                    return
                continue
            job.sent_at = time.monotonic()
            self._worked(job.uri)
            self._finish(job, True, None)
            return

    def _finish(self, job: Job, ok: bool, error: str | None) -> None:
        state = self._state(job.uri)
        with self._lock:
            state.queued = max(0, state.queued - 1)
            if ok:
                state.printed += 1
            else:
                state.failed += 1
                state._lost_in_outage += 1
        job.ok, job.error = ok, error
        self.last_job = job
        if job.done is not None:
            job.done.set()

    def _failed(self, uri: str, exc: PrinterError) -> None:
        state = self._state(uri)
        with self._lock:
            first = state.state != "failing"
            state.state = "failing"
            state.last_error, state.last_error_kind = str(exc), exc.kind
            state.last_error_at = utcnow_iso()
            if first:
                state.failing_since = state.last_error_at
                state._failing_mono = time.monotonic()
                state._lost_in_outage = 0
        if first:
            log.warning("printer %s is not printing: %s. Kiosk tickets are still shown on "
                        "screen; this is logged once until the printer works again.", uri, exc)

    def _worked(self, uri: str) -> None:
        state = self._state(uri)
        with self._lock:
            recovered = state.state == "failing"
            lost, since = state._lost_in_outage, state._failing_mono
            state.state = "ok"
            state.last_ok_at = utcnow_iso()
            state.failing_since = None
        if recovered:
            log.warning("printer %s works again after %.0f s; %d receipt(s) were not printed "
                        "meanwhile", uri, time.monotonic() - since, lost)


def reachable_url(url: str) -> str:
    """``url`` with a loopback host replaced by this machine's LAN address.

    A kiosk on the server PC itself reaches it as ``localhost``; a phone
    scanning the receipt's QR code needs the LAN address instead.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host not in ("localhost", "::1") and not host.startswith("127."):
        return url
    from ..addresses import lan_ipv4_addresses

    found = lan_ipv4_addresses()
    if not found:
        return url
    netloc = found[0] + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
