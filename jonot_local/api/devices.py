"""Registered devices (admin): register a kiosk, display or desk PC, list, revoke; the
body of a kiosk's or display's options (set with ``PATCH /devices/<id>``, in ``printers``)."""

from __future__ import annotations

from flask import Response, jsonify

from ..bodies import Body, Field, boolean, integer, text
from ..domain import devices
from ..domain.errors import ValidationError
from ..runtime import runtime
from . import blueprint
from .common import page_of, read_body, require
from .queues import NAME_DOC, NAME_HELP


class DeviceCreate(Body):
    kind = text(required=True, enum=devices.KINDS)
    name = text(required=True, doc=NAME_DOC, description=NAME_HELP)
    display_id = text(description="A display device: the display its screen shows "
                                  "(its pairing link opens /display/<display_id>)")


class KioskOptions(Body):
    """A kiosk's or display's options; only the keys given change, null restores the default.
    A display has queue_ids and language (its pages and spoken announcements); a kiosk
    has them all"""

    queue_ids = Field({"type": "array", "items": {"type": "string"},
                       "description": "The queues shown, in this order (null: every queue "
                                      "in kiosk order)"},
                      lambda v: None if isinstance(v, list) and all(isinstance(i, str) for i in v)
                      else "must be a list of queue ids")
    priority_button = boolean(description="Show a priority button (default false; kiosks)")
    language = text(description="The kiosk's or display's language, e.g. fi (null: the "
                                "browser's; a display: the server's display language first)")
    printing = boolean(description="Print a paper ticket where a printer is set up "
                                   "(default true; kiosks)")
    return_s = integer(minimum=devices.RETURN_S_RANGE[0], maximum=devices.RETURN_S_RANGE[1],
                       description="Seconds the new ticket stays on screen (default 12; "
                                   "kiosks)")


def _options_problem(value: object) -> str | None:
    if not isinstance(value, dict):
        return "must be an object"
    try:
        KioskOptions.parse(value)
    except ValidationError as err:
        return err.message
    return None


def kiosk_options_field() -> Field:
    """The ``options`` field of a kiosk's or display's edit (``PATCH /devices/<id>``, in
    ``printers``)."""
    return Field(KioskOptions.schema(), _options_problem, nullable=False)


@blueprint.get("/devices")
@require("admin")
def list_devices() -> Response:
    """A page of registered devices, newest first (tokens are never shown again)."""
    with runtime().store.read() as tx:
        return jsonify(page_of(devices.list_devices(tx)))


@blueprint.post("/devices")
@require("admin")
def register_device() -> tuple[Response, int]:
    """Register ``{"kind": "kiosk"|"display"|"desk", "name"}``; the answer holds its token."""
    body = read_body(DeviceCreate)
    with runtime().store.write() as tx:
        device, token = devices.register(tx, body.get("kind"), body.get("name"),
                                         body.get("display_id"))
    return jsonify({**device, "token": token}), 201


@blueprint.post("/devices/<device_id>/renew")
@require("admin")
def renew_device(device_id: str) -> Response:
    """A new credential for a device (the old one stops working); the answer holds it."""
    with runtime().store.write() as tx:
        device, token = devices.renew_token(tx, device_id)
    return jsonify({**device, "token": token})


@blueprint.post("/devices/<device_id>/revoke")
@require("admin")
def revoke_device(device_id: str) -> Response:
    """Stop a device's credential working."""
    with runtime().store.write() as tx:
        return jsonify(devices.revoke(tx, device_id))
