"""The ESC/POS bytes of a kiosk receipt, built with python-escpos (no printer needed).

The receipt is rendered into python-escpos's ``Dummy`` printer, so the same
bytes go to a network or USB printer and can be checked in tests. Text goes
through the printer profile's code pages (the default profile picks CP437 for
Finnish ä/ö: ``0x84``/``0x94``). The QR code is the printer's own
(``GS ( k``, about 150 bytes) or, for printers without it, a raster image
made here (a few KB).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from escpos.printer import Dummy

QR_MODES = ("native", "image")
LANGUAGES = ("en", "fi")

_TEXTS = {
    "en": {"ahead": "People ahead: {n}", "none_ahead": "You are next",
           "wait": "About {n} minutes", "wait_one": "About 1 minute",
           "scan": "Scan to follow your turn on your phone", "test": "Test print",
           "test_ok": "If you can read this, the printer works.",
           "scan_wifi": "On the clinic's Wi-Fi", "scan_anywhere": "From anywhere (mobile data)"},
    "fi": {"ahead": "Edellä jonossa: {n}", "none_ahead": "Olet seuraava",
           "wait": "Noin {n} minuuttia", "wait_one": "Noin 1 minuutti",
           "scan": "Skannaa ja seuraa vuoroasi puhelimella", "test": "Testitulostus",
           "test_ok": "Jos voit lukea tämän, tulostin toimii.",
           "scan_wifi": "Klinikan Wi-Fi-verkossa",
           "scan_anywhere": "Mistä tahansa (mobiilidata)"},
}


@dataclass(frozen=True)
class Receipt:
    """What a kiosk ticket's receipt says. ``issued_at`` is shown in its own time zone."""

    clinic: str
    queue: str
    code: str
    issued_at: datetime
    people_ahead: int | None
    wait_minutes: int | None
    url: str
    #: The cloud copy of the ticket page (sync on): printed as a second QR code.
    cloud_url: str | None = None


def wait_minutes(estimated_wait_s: float | None) -> int | None:
    """Whole minutes for "about N minutes" (at least 1 when there is a wait at all)."""
    if estimated_wait_s is None:
        return None
    return max(1, round(estimated_wait_s / 60)) if estimated_wait_s > 0 else 0


def build_receipt(receipt: Receipt, *, qr: str = "native", profile: str = "TM-T20II",
                  language: str = "en") -> bytes:
    """The ESC/POS bytes: clinic, queue, the code in the largest text, time, people
    ahead, the wait, a QR code of the ticket page, and a cut."""
    texts = _TEXTS.get(language, _TEXTS["en"])
    p = Dummy(profile=profile)
    p.hw("INIT")
    p.set(align="center", bold=True, double_height=True)
    p.textln(receipt.clinic or "Jonot")
    p.set(align="center", normal_textsize=True)
    p.textln(receipt.queue)
    p.ln()
    # 4 x 4 is the largest size whose longest codes (A1042-2) still fit a 58 mm roll.
    p.set(align="center", bold=True, custom_size=True, width=4, height=4)
    p.textln(receipt.code)
    p.set(align="center", normal_textsize=True)
    p.ln()
    p.textln(receipt.issued_at.strftime("%d.%m.%Y %H:%M"))
    if receipt.people_ahead is not None:
        p.textln(texts["ahead"].format(n=receipt.people_ahead) if receipt.people_ahead
                 else texts["none_ahead"])
    if receipt.wait_minutes:
        p.textln(texts["wait_one"] if receipt.wait_minutes == 1
                 else texts["wait"].format(n=receipt.wait_minutes))
    p.ln()
    if receipt.cloud_url:  # sync on: the LAN page and the cloud copy, each captioned
        p.set(align="center", normal_textsize=True)
        p.textln(texts["scan_wifi"])
    _qr(p, receipt.url, qr)
    if receipt.cloud_url:
        p.set(align="center", normal_textsize=True)
        p.textln(texts["scan_anywhere"])
        _qr(p, receipt.cloud_url, qr)
    p.set(align="center", normal_textsize=True)
    p.textln(texts["scan"])
    p.cut()
    return bytes(p.output)


def build_test_page(clinic: str, uri: str, now: datetime, *, qr: str = "native",
                    profile: str = "TM-T20II", language: str = "en") -> bytes:
    """A short test receipt naming the printer, with a QR code and a cut."""
    texts = _TEXTS.get(language, _TEXTS["en"])
    p = Dummy(profile=profile)
    p.hw("INIT")
    p.set(align="center", bold=True, double_height=True, double_width=True)
    p.textln(texts["test"])
    p.set(align="center", normal_textsize=True)
    p.textln(clinic or "Jonot")
    p.textln(uri)
    p.textln(now.strftime("%d.%m.%Y %H:%M:%S"))
    p.textln(texts["test_ok"])
    _qr(p, "jonot-local test " + now.strftime("%H:%M:%S"), qr)
    p.cut()
    return bytes(p.output)


def _qr(p: Dummy, payload: str, mode: str) -> None:
    # python-escpos refuses center=True for native QR codes: align first.
    p.set(align="center")
    if mode == "image":
        p.qr(payload, native=False, size=6, center=True)
    else:
        p.qr(payload, native=True, size=6)
