"""Health and the OpenAPI document."""

from __future__ import annotations

from flask import Response, current_app, jsonify

from ..domain.location import get_location
from ..runtime import runtime
from . import blueprint


@blueprint.get("/health")
def health() -> Response:
    """``{"status": "ok"}`` with version, location id and sync state."""
    from ..app import sync_enabled
    from ..sync.worker import sync_status

    rt = runtime()
    with rt.store.read() as tx:
        location = get_location(tx)
        sync = sync_status(tx, sync_enabled(rt.settings), rt.settings.sync_heartbeat_s)
    return jsonify({
        "status": "ok",
        "version": current_app.config["JONOT_VERSION"],
        "location_id": location["id"],
        "location_name": location["name"],
        "sync": sync,
    })


@blueprint.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 description of this API."""
    from .openapi import build_document

    return jsonify(build_document())
