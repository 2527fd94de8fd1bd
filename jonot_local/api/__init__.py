"""The JSON API under ``/api/v1``: thin adapters from HTTP to the domain."""

from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")

# Route modules register themselves on the blueprint when imported.
from . import (  # noqa: E402,F401
    auth_routes,
    desks,
    devices,
    docs,
    meta,
    printers,
    queues,
    streams,
    tickets,
)
