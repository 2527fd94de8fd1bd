"""What a display shows: one view, served by ``GET /displays/{id}/state`` and by the
``state`` event that opens a live stream."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ..db import Tx
from ..timeutil import to_iso, utcnow
from . import devices, queues, status
from .errors import NotFound

#: the queue ids a viewer follows; ``None``: every queue
Scope = frozenset[str] | None

RECENT_CALLS = 6
ANNOUNCE_WITHIN_S = 30 * 60  # a call is spoken by the server this long after it was made


def find_display(tx: Tx, display_id: str) -> dict[str, Any]:
    """A display by id: one made with ``POST /displays``, or a registered display device.

    Both come back in one shape, ``{"id", "name", "queue_ids", "language"}``
    (``queue_ids`` empty: every queue; ``language`` ``None``: the server's display
    language). A device's come from its options. Raises ``NotFound`` (also for a
    revoked device, or a device that is not a display).
    """
    try:
        return queues.get_display(tx, display_id)
    except NotFound:
        pass
    try:
        device = devices.get(tx, display_id)
    except NotFound:
        raise NotFound(f"No display with id {display_id}.") from None
    if device["kind"] != "display" or not device["active"]:
        raise NotFound(f"No display with id {display_id}.")
    options = device["options"]
    return {"id": device["id"], "name": device["name"],
            "queue_ids": list(options.get("queue_ids") or []),
            "language": options.get("language"), "created_at": device["created_at"]}


def display_scope(display: dict[str, Any] | None) -> Scope:
    """The queues a display follows: its own list, or every queue when it has none."""
    if display and display.get("queue_ids"):
        return frozenset(display["queue_ids"])
    return None


def display_state(tx: Tx, display: dict[str, Any] | None, scope: Scope,
                  default_service_s: float) -> dict[str, Any]:
    """What a display shows now: its queues (waiting, now serving) and the latest calls.

    ``scope`` narrows the queues (``display_scope(display)`` for a display as set up;
    a stream may narrow it further). ``{"display", "queues", "recent_calls"}``.
    """
    shown = [q for q in queues.list_queues(tx) if scope is None or q.id in scope]
    if scope is None:
        recent = status.recent_calls(tx, None, limit=RECENT_CALLS)
    else:
        recent = status.recent_calls(tx, [q.id for q in shown],
                                     limit=RECENT_CALLS) if shown else []
    return {
        "display": display,
        "queues": [status.queue_summary(tx, q, default_service_s) for q in shown],
        "recent_calls": recent,
    }


def latest_call(tx: Tx, code: str, within_s: float = ANNOUNCE_WITHIN_S) -> dict[str, Any] | None:
    """The newest call of the ticket showing ``code`` made in the last ``within_s`` seconds:
    ``{"code", "desk_name"}`` (what a display announces), or ``None``."""
    since = to_iso(utcnow() - timedelta(seconds=within_s))
    row = tx.one(
        "SELECT t.code, d.name AS desk_name FROM interactions i "
        "JOIN tickets t ON t.id = i.ticket_id LEFT JOIN desks d ON d.id = i.desk_id "
        "WHERE i.started_at >= ? AND t.code = ? ORDER BY i.started_at DESC LIMIT 1",
        (since, code))
    return {"code": row["code"], "desk_name": row["desk_name"]} if row else None
