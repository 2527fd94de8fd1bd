"""Health and the OpenAPI document."""

from __future__ import annotations

from flask import Response, current_app, jsonify

from ..domain.location import get_location
from ..lan.announce import discovery_status
from ..runtime import runtime
from . import blueprint


@blueprint.get("/health")
def health() -> Response:
    """``{"status": "ok"}`` with version, location id, sync, LAN discovery and printer state."""
    from ..app import sync_enabled
    from ..sync.worker import sync_status

    rt = runtime()
    with rt.store.read() as tx:
        location = get_location(tx)
        sync = sync_status(tx, sync_enabled(rt.settings), rt.settings.sync_heartbeat_s)
    printing = rt.printing
    return jsonify({
        "status": "ok",
        "version": current_app.config["JONOT_VERSION"],
        "location_id": location["id"],
        "location_name": location["name"],
        "sync": sync,
        "discovery": discovery_status(rt.discovery),
        "printer": (printing.summary() if printing is not None
                    else {"state": "off", "printers": 0, "queue": 0, "running": False}),
    })


@blueprint.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 description of this API."""
    from .openapi import build_document

    return jsonify(build_document())
