"""Registered devices (admin): register a kiosk, display or desk PC, list, revoke."""

from __future__ import annotations

from flask import Response, jsonify

from ..bodies import Body, text
from ..domain import devices
from ..runtime import runtime
from . import blueprint
from .common import page_of, read_body, require
from .queues import NAME_DOC, NAME_HELP


class DeviceCreate(Body):
    kind = text(required=True, enum=devices.KINDS)
    name = text(required=True, doc=NAME_DOC, description=NAME_HELP)


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
        device, token = devices.register(tx, body.get("kind"), body.get("name"))
    return jsonify({**device, "token": token}), 201


@blueprint.post("/devices/<device_id>/revoke")
@require("admin")
def revoke_device(device_id: str) -> Response:
    """Stop a device's credential working."""
    with runtime().store.write() as tx:
        return jsonify(devices.revoke(tx, device_id))
