"""Receipt printers (admin): their state, a test print, a kiosk's own printer."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from ..bodies import Body, text
from ..domain import devices
from ..domain.errors import ValidationError
from ..printing import PrintService
from ..runtime import runtime
from . import blueprint
from .common import read_body, require
from .devices import kiosk_options_field
from .errors import ApiError

PRINTER_URI_DOC = {"examples": ["tcp://192.0.2.10:9100", "usb://04b8:0202"]}


class DeviceUpdate(Body):
    """A kiosk's own receipt printer (null: the server's default), a kiosk's or display's
    options; only the fields given change"""

    printer = text(nullable=True, doc=PRINTER_URI_DOC,
                   description="tcp://HOST[:PORT] or usb://VID:PID, or null")
    options = kiosk_options_field()


class PrinterTest(Body):
    """Which printer prints the test page (default: the default printer)."""

    printer = text(doc=PRINTER_URI_DOC, description="tcp://HOST[:PORT] or usb://VID:PID")


def _service() -> PrintService:
    printing = runtime().printing
    if printing is None:  # pragma: no cover - create_app always makes one
        raise ApiError(503, "unavailable", "Printing is not available on this server.")
    return printing


def printers_json(printing: PrintService) -> dict[str, Any]:
    """The default printer, every kiosk's own, each with its state; the queue length."""
    with runtime().store.read() as tx:
        own = devices.printers(tx)
    return {"default": printing.default_uri or None, "queue": printing.queue_length,
            "running": printing.running, "items": printing.states(own)}


@blueprint.get("/printers")
@require("admin")
def list_printers() -> Response:
    """Each printer's state: last success, last error, receipts printed and lost, queued."""
    return jsonify(printers_json(_service()))


@blueprint.post("/printers/test")
@require("admin")
def test_printer() -> Response:
    """Print a test page on ``{"printer": URI}`` (default: the default printer); waits for
    the result, a few seconds at most."""
    uri = read_body(PrinterTest, required=False).get("printer")
    printing = _service()
    try:
        result = printing.test_print(uri)
    except ValueError as exc:
        raise ValidationError.field("printer", str(exc)) from None
    return jsonify(result)


@blueprint.patch("/devices/<device_id>")
@require("admin")
def edit_device(device_id: str) -> Response:
    """Set a kiosk's own receipt printer ``{"printer": URI}`` (``null``: the default) and/or
    a kiosk's or display's options ``{"options": {...}}`` (``devices.set_options``)."""
    body = read_body(DeviceUpdate)
    with runtime().store.write() as tx:
        device = devices.get(tx, device_id)
        if not body:
            raise ValidationError("Give printer or options.", [
                {"field": "printer", "message": "printer or options is required"}])
        if "printer" in body:
            device = devices.set_printer(tx, device_id, body["printer"])
        if "options" in body:
            device = devices.set_options(tx, device_id, body["options"])
        return jsonify(device)
