"""Admin: registered devices — kiosks, TV displays, desk PCs — in two steps.

1. The admin registers a device (``devices.register``, as ``POST /api/v1/devices``);
   the answer shows its pairing link and a QR code of it, once.
2. The device opens the link (``pages/pairing.py``): it is paired, and the list
   says when. A lost link is replaced with a new one (``devices.renew_token``),
   which also cuts off whichever browser had the old one.

A kiosk's options and own printer are saved as ``PATCH /api/v1/devices/<id>``
saves them (``devices.set_options``, ``devices.set_printer``).
"""

from __future__ import annotations

from typing import Any

from flask import request, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response as BaseResponse

from ...domain import devices, queues
from ...domain.errors import DomainError
from ...i18n import available_languages
from ...runtime import runtime
from .. import blueprint
from ..common import is_htmx
from ..kiosk import qr_svg
from ..session import staff_page
from .common import after_post, checked, refused, render


def _context() -> dict[str, Any]:
    printing = runtime().printing
    with runtime().store.read() as tx:
        return {"devices": devices.list_devices(tx), "queues": queues.list_queues(tx),
                "displays": queues.list_displays(tx), "languages": available_languages(),
                "kinds": devices.KINDS, "return_range": devices.RETURN_S_RANGE,
                "default_printer": (printing.default_uri if printing else "") or ""}


def pairing_link(device: dict[str, Any], token: str) -> str:
    """The full address the device opens once to become this device."""
    if device["kind"] == "kiosk":
        return url_for("pages.kiosk_pair", device_id=device["id"], token=token, _external=True)
    if device["kind"] == "display":
        return url_for("pages.display_pair", device_id=device["id"], token=token,
                       _external=True)
    return url_for("pages.desk_pair", device_id=device["id"], token=token, _external=True)


def _paired_answer(device: dict[str, Any], token: str, notice: str) -> BaseResponse:
    """The section with the new pairing link and its QR code (shown this once)."""
    link = pairing_link(device, token)
    return render("devices", {**_context(), "notice": notice,
                              "pairing": {"device": device, "link": link, "qr": qr_svg(link)}},
                  201 if request.endpoint == "pages.admin_device_create" else 200)


def _devices(notice: str | None = None) -> BaseResponse:
    if request.method == "POST" and not is_htmx():
        return after_post(notice, "pages.admin_devices")
    return render("devices", {**_context(), "notice": notice})


@blueprint.get("/admin/devices")
@staff_page("admin")
def admin_devices() -> BaseResponse:
    """Every registered device, newest first, and the form to register one."""
    return _devices()


@blueprint.post("/admin/devices")
@staff_page("admin")
def admin_device_create() -> BaseResponse:
    """Register a device; the answer shows its pairing link once."""
    form = request.form
    kind = form.get("kind", "")
    display_id = (form.get("display_id") or None) if kind == "display" else None
    try:
        with runtime().store.write() as tx:
            device, token = devices.register(tx, kind, form.get("name", ""), display_id)
    except DomainError as err:
        return refused("devices", _context(), err, "new-device")
    return _paired_answer(device, token, gettext(
        "%(name)s is registered. Open the link below on the device itself.",
        name=device["name"]))


@blueprint.post("/admin/devices/<device_id>/renew")
@staff_page("admin")
def admin_device_renew(device_id: str) -> BaseResponse:
    """A new pairing link for a device; the old link and whoever paired with it stop."""
    try:
        with runtime().store.write() as tx:
            device, token = devices.renew_token(tx, device_id)
    except DomainError as err:
        return refused("devices", _context(), err, f"device-{device_id}")
    return _paired_answer(device, token, gettext(
        "A new pairing link for %(name)s. The old one no longer works.", name=device["name"]))


@blueprint.post("/admin/devices/<device_id>/revoke")
@staff_page("admin")
def admin_device_revoke(device_id: str) -> BaseResponse:
    """Stop a device's credential working (``devices.revoke``)."""
    try:
        with runtime().store.write() as tx:
            device = devices.revoke(tx, device_id)
    except DomainError as err:
        return refused("devices", _context(), err, f"device-{device_id}")
    return _devices(gettext("%(name)s is revoked.", name=device["name"]))


@blueprint.post("/admin/devices/<device_id>")
@staff_page("admin")
def admin_device_edit(device_id: str) -> BaseResponse:
    """Save a kiosk's options and own printer, in one transaction (as the API's PATCH)."""
    form = request.form
    raw_return = (form.get("return_s") or "").strip()
    return_s: Any = None
    if raw_return:
        return_s = int(raw_return) if raw_return.lstrip("-").isdigit() else raw_return
    options = {
        "queue_ids": form.getlist("queue_ids") or None,
        "priority_button": checked("priority_button"),
        "language": form.get("language") or None,
        "printing": checked("printing"),
        "return_s": return_s,
    }
    try:
        with runtime().store.write() as tx:
            devices.set_options(tx, device_id, options)
            device = devices.set_printer(tx, device_id, form.get("printer", ""))
    except DomainError as err:
        return refused("devices", _context(), err, f"device-{device_id}")
    return _devices(gettext("%(name)s saved.", name=device["name"]))
