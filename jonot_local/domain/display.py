"""What a display shows: one view, served by ``GET /displays/{id}/state`` and by the
``state`` event that opens a live stream."""

from __future__ import annotations

from typing import Any

from ..db import Tx
from . import queues, status

#: the queue ids a viewer follows; ``None``: every queue
Scope = frozenset[str] | None

RECENT_CALLS = 6


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
