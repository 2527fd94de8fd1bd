"""Kiosk receipts: the ESC/POS bytes, and the print queue against a TCP printer stand-in."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from jonot_local.printing import PrintService, build_receipt, parse_uri
from jonot_local.printing.receipt import Receipt, wait_minutes
from jonot_local.printing.worker import reachable_url
from tests.escpos_standin import EscposStandin, parse

URL = "http://192.0.2.7:8080/t/AbCdEfGhIjKlMnOpQrStUv"


def receipt(**more: Any) -> Receipt:
    values: dict[str, Any] = dict(
        clinic="Terveysasema Häme", queue="Lääkäri", code="A042",
        issued_at=datetime(2026, 3, 2, 8, 5, tzinfo=timezone(timedelta(hours=2))),
        people_ahead=3, wait_minutes=15, url=URL)
    values.update(more)
    return Receipt(**values)


@pytest.fixture
def printer() -> Any:
    standin = EscposStandin()
    yield standin
    standin.close()


def service(uri: str, **more: Any) -> PrintService:
    options: dict[str, Any] = dict(timeout=0.5, retry_delay_s=0.05, attempts=2,
                                   clinic_name=lambda: "Clinic")
    options.update(more)
    svc = PrintService(uri, **options)
    svc.start()
    return svc


def ticket(code: str = "A001", url: str = URL) -> dict[str, Any]:
    return {"code": code, "queue_name": "General", "position": 2, "estimated_wait_s": 300,
            "url": url, "created_at": "2026-03-02T06:05:00.000000Z"}


def wait_until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


# -- the receipt's bytes ------------------------------------------------------------------

def test_receipt_holds_the_code_large_the_qr_of_the_ticket_url_and_a_cut() -> None:
    data = build_receipt(receipt())
    parsed = parse(data)
    assert parsed.big == ["A042"]
    assert parsed.qr_payloads == [URL] and parsed.qr_printed == 1
    assert parsed.cuts == 1 and data.rstrip(b"\x00").endswith(b"\x1dV")
    text = parsed.text
    for expected in ("Lääkäri", "02.03.2026 08:05", "People ahead: 3", "About 15 minutes"):
        assert expected in text
    # Finnish letters through the printer's code page: CP437 (ESC t 0), ä = 0x84, ä/Ä/ö/Ö.
    assert parsed.code_pages and parsed.code_pages[0] == 0
    assert b"L\x84\x84k\x84ri" in data
    assert "Jos voit" not in text
    assert len(data) < 400


def test_finnish_receipt_lines() -> None:
    data = build_receipt(receipt(people_ahead=0, wait_minutes=1, clinic="Öljymäki"),
                         language="fi")
    parsed = parse(data)
    assert "Olet seuraava" in parsed.text and "Noin 1 minuutti" in parsed.text
    assert b"\x99ljym\x84ki" in data  # Ö = 0x99 in CP437


def test_image_qr_for_printers_without_native_qr() -> None:
    data = build_receipt(receipt(), qr="image")
    parsed = parse(data)
    assert parsed.qr_payloads == [] and parsed.images >= 1
    assert "A042" in parsed.big and parsed.cuts == 1
    assert len(data) > 2000


def test_wait_minutes_rounds_and_never_says_zero_for_a_wait() -> None:
    assert wait_minutes(None) is None
    assert wait_minutes(0) == 0
    assert wait_minutes(20) == 1
    assert wait_minutes(899) == 15


@pytest.mark.parametrize("uri, scheme, where", [
    ("tcp://192.0.2.10:9100", "tcp", ("192.0.2.10", 9100)),
    ("tcp://printer.lan", "tcp", ("printer.lan", 9100)),
    ("usb://04b8:0202", "usb", (0x04B8, 0x0202)),
])
def test_printer_uris(uri: str, scheme: str, where: tuple[Any, Any]) -> None:
    target = parse_uri(uri)
    assert target.scheme == scheme
    got = (target.host, target.port) if scheme == "tcp" else (target.vendor_id,
                                                              target.product_id)
    assert got == where


@pytest.mark.parametrize("uri", ["", "192.0.2.1:9100", "tcp://", "tcp://h:99999",
                                 "usb://04b8", "usb://zz:01", "lpt://1", "tcp://h/x"])
def test_bad_printer_uris_say_what_to_write(uri: str) -> None:
    with pytest.raises(ValueError, match="tcp://|usb://"):
        parse_uri(uri)


def test_a_bad_printer_setting_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="JONOT_PRINTER"):
        PrintService("192.0.2.1")
    with pytest.raises(ValueError, match="JONOT_PRINTER_QR"):
        PrintService("tcp://192.0.2.1", qr="png")


def test_loopback_ticket_urls_become_the_lan_address(monkeypatch: pytest.MonkeyPatch) -> None:
    import jonot_local.addresses as addresses

    monkeypatch.setattr(addresses, "lan_ipv4_addresses", lambda: ["192.168.1.20"])
    assert reachable_url("http://localhost:8080/t/x") == "http://192.168.1.20:8080/t/x"
    assert reachable_url("http://127.0.0.1/t/x") == "http://192.168.1.20/t/x"
    assert reachable_url(URL) == URL


# -- the queue against the stand-in ----------------------------------------------------------

def test_a_ticket_reaches_the_printer(printer: EscposStandin) -> None:
    svc = service(printer.uri)
    try:
        assert svc.print_ticket(ticket("B007"))
        parsed = parse(printer.wait_for(1)[0])
        assert "B007" in parsed.big and parsed.qr_payloads == [URL] and parsed.cuts == 1
        assert parsed.status_queries == 2  # paper before, "took it all" after
        wait_until(lambda: svc.state_of(printer.uri)["printed"] == 1)
        state = svc.state_of(printer.uri)
        assert state["state"] == "ok" and state["last_ok_at"] and state["queued"] == 0
    finally:
        svc.stop()


def test_no_printer_no_job() -> None:
    svc = PrintService("")
    assert svc.print_ticket(ticket()) is False
    assert svc.summary()["state"] == "off"


def test_refused_then_back_logged_once_per_outage(printer: EscposStandin,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "jonot_local.printing")
    printer.refuse()
    svc = service(printer.uri, attempts=2)
    try:
        for n in range(3):
            svc.print_ticket(ticket(f"A00{n}"))
        wait_until(lambda: svc.state_of(printer.uri)["failed"] == 3)
        state = svc.state_of(printer.uri)
        assert state["state"] == "failing" and state["last_error_kind"] == "refused"
        assert "refused" in state["last_error"] and state["failing_since"]
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "not printing" in warnings[0].getMessage()
        printer.come_back()
        svc.print_ticket(ticket("A009"))
        assert "A009" in parse(printer.wait_for(1)[0]).big
        wait_until(lambda: len([r for r in caplog.records if r.levelno >= logging.WARNING]) > 1)
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 2 and "works again after" in warnings[1].getMessage()
        assert "3 receipt(s) were not printed" in warnings[1].getMessage()
    finally:
        svc.stop()


def test_hung_printer_times_out_and_the_worker_recovers(printer: EscposStandin) -> None:
    printer.mode = "hang"
    svc = service(printer.uri, timeout=0.3, attempts=1)
    try:
        started = time.monotonic()
        svc.print_ticket(ticket("A001"))
        wait_until(lambda: svc.state_of(printer.uri)["failed"] == 1)
        assert time.monotonic() - started < 2.0
        state = svc.state_of(printer.uri)
        assert state["last_error_kind"] == "timeout" and "stopped answering" in state["last_error"]
        printer.mode = "ok"
        svc.print_ticket(ticket("A002"))
        assert "A002" in parse(printer.wait_for(1)[0]).big
        assert svc.running
    finally:
        svc.stop()


def test_reset_mid_receipt_is_retried(printer: EscposStandin) -> None:
    printer.mode = "reset"
    svc = service(printer.uri, attempts=3, retry_delay_s=0.2)
    try:
        svc.print_ticket(ticket("A005"))
        wait_until(lambda: svc.state_of(printer.uri)["state"] == "failing")
        assert svc.state_of(printer.uri)["last_error_kind"] == "reset"
        printer.mode = "ok"
        assert "A005" in parse(printer.wait_for(1)[0]).big
        wait_until(lambda: svc.state_of(printer.uri)["printed"] == 1)
        assert svc.last_job is not None and svc.last_job.attempts >= 2
    finally:
        svc.stop()


def test_out_of_paper_is_seen_before_printing(printer: EscposStandin) -> None:
    printer.mode = "no_paper"
    svc = service(printer.uri, attempts=1)
    try:
        svc.print_ticket(ticket())
        wait_until(lambda: svc.state_of(printer.uri)["failed"] == 1)
        state = svc.state_of(printer.uri)
        assert state["last_error_kind"] == "no_paper" and "out of paper" in state["last_error"]
        assert printer.receipts == []
    finally:
        svc.stop()


def test_a_stale_receipt_is_dropped_not_printed_late(printer: EscposStandin,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "jonot_local.printing")
    printer.refuse()
    svc = service(printer.uri, attempts=1000, retry_delay_s=0.05, max_age_s=0.4)
    try:
        svc.print_ticket(ticket("A001"))
        wait_until(lambda: svc.state_of(printer.uri)["failed"] == 1)
        assert any("dropped" in r.getMessage() for r in caplog.records)
        printer.come_back()
        svc.print_ticket(ticket("A002"))
        receipts = printer.wait_for(1)
        time.sleep(0.2)
        assert len(printer.receipts) == 1 and "A002" in parse(receipts[0]).big
    finally:
        svc.stop()


def test_a_full_queue_drops_instead_of_waiting() -> None:
    svc = PrintService("tcp://127.0.0.1:9", queue_size=2)  # never started
    started = time.monotonic()
    assert [svc.print_ticket(ticket()) for _ in range(3)] == [True, True, False]
    assert time.monotonic() - started < 0.5
    assert svc.state_of("tcp://127.0.0.1:9")["failed"] == 1 and svc.queue_length == 2


def test_flapping_printer_gets_every_ticket_while_it_is_up(
        printer: EscposStandin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "jonot_local.printing")
    svc = service(printer.uri, attempts=1)
    try:
        expected = []
        for round_ in range(3):
            printer.come_back()
            code = f"F{round_}"
            expected.append(code)
            svc.print_ticket(ticket(code))
            printer.wait_for(len(expected))
            printer.refuse()
            svc.print_ticket(ticket(f"X{round_}"))
            wait_until(lambda r=round_: svc.state_of(printer.uri)["failed"] == r + 1)
        wait_until(lambda: sum("works again after" in r.getMessage() for r in caplog.records) == 2)
        codes = [parse(r).big[-1] for r in printer.receipts]
        assert codes == expected
        messages = [r.getMessage() for r in caplog.records]
        assert sum("not printing" in m for m in messages) == 3  # one per outage
        assert sum("works again after" in m for m in messages) == 2
    finally:
        svc.stop()


def test_test_print(printer: EscposStandin) -> None:
    svc = service(printer.uri)
    try:
        result = svc.test_print()
        assert result["printed"] is True and result["error"] is None
        assert result["state"]["state"] == "ok"
        assert "Test print" in parse(printer.wait_for(1)[0]).text
        printer.refuse()
        result = svc.test_print()
        assert result["printed"] is False and "refused" in result["error"]
    finally:
        svc.stop()


def test_stop_is_prompt_even_with_a_hung_printer(printer: EscposStandin) -> None:
    printer.mode = "hang"
    svc = service(printer.uri, timeout=0.5, attempts=1)
    svc.print_ticket(ticket())
    time.sleep(0.1)
    started = time.monotonic()
    svc.stop(timeout=2)
    assert time.monotonic() - started < 1.5 and not svc.running
