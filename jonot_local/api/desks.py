"""Desk and display endpoints: set-up, call-next, what a display shows."""

from __future__ import annotations

from flask import Response, jsonify

from ..domain import queues, status, tickets
from ..domain.display import display_scope, display_state
from ..runtime import runtime
from . import blueprint
from .common import (
    current_user,
    desk_json,
    field_type,
    json_body,
    page_of,
    require,
    ticket_json,
)

DESK_FIELDS = ("name", "queue_ids", "pick_mode")


@blueprint.get("/desks")
@require("staff")
def list_desks() -> Response:
    """A page of desks (by name) with their queues in priority order."""
    with runtime().store.read() as tx:
        items = [desk_json(d) for d in queues.list_desks(tx)]
    return jsonify(page_of(items))


@blueprint.post("/desks")
@require("admin")
def create_desk() -> tuple[Response, int]:
    """Create a desk ``{"name", "queue_ids": [...], "pick_mode"?}``."""
    body = json_body(allowed=DESK_FIELDS)
    pick_mode = field_type(body, "pick_mode", str)
    with runtime().store.write() as tx:
        desk = queues.create_desk(
            tx, name=field_type(body, "name", str, required=True),
            queue_ids=field_type(body, "queue_ids", list, required=True),
            pick_mode="queue_order" if pick_mode is None else pick_mode)
    return jsonify(desk_json(desk)), 201


@blueprint.get("/desks/<desk_id>")
@require("staff")
def get_desk(desk_id: str) -> Response:
    """One desk."""
    with runtime().store.read() as tx:
        return jsonify(desk_json(queues.get_desk(tx, desk_id)))


@blueprint.patch("/desks/<desk_id>")
@require("admin")
def update_desk(desk_id: str) -> Response:
    """Change a desk's name, queues (priority order) or ``pick_mode``."""
    body = json_body(allowed=DESK_FIELDS)
    with runtime().store.write() as tx:
        desk = queues.update_desk(
            tx, desk_id, name=field_type(body, "name", str),
            queue_ids=field_type(body, "queue_ids", list),
            pick_mode=field_type(body, "pick_mode", str))
    return jsonify(desk_json(desk))


@blueprint.post("/desks/<desk_id>/call-next")
@require("staff")
def call_next(desk_id: str) -> Response:
    """Call the next ticket for this desk; 404 ``queue_empty`` when none waits."""
    json_body(required=False, allowed=())
    user_id = current_user()["id"]  # type: ignore[index]  # @require: never None
    with runtime().store.write() as tx:
        ticket = tickets.call_next(tx, desk_id, user_id=user_id)
        data = ticket_json(ticket)
        data.update(status.ticket_status(tx, ticket, runtime().settings.default_service_s))
    return jsonify(data)


# -- displays --------------------------------------------------------------------------

@blueprint.get("/displays")
def list_displays() -> Response:
    """A page of displays, by name."""
    with runtime().store.read() as tx:
        items = queues.list_displays(tx)
    return jsonify(page_of(items))


@blueprint.post("/displays")
@require("admin")
def create_display() -> tuple[Response, int]:
    """Create a display ``{"name", "queue_ids"?}`` (no queues: it shows them all)."""
    body = json_body(allowed=("name", "queue_ids"))
    with runtime().store.write() as tx:
        display = queues.create_display(
            tx, name=field_type(body, "name", str, required=True),
            queue_ids=field_type(body, "queue_ids", list))
    return jsonify(display), 201


@blueprint.get("/displays/<display_id>/state")
def get_display_state(display_id: str) -> Response:
    """Now serving per queue, the last calls and waiting counts, for a TV."""
    with runtime().store.read() as tx:
        display = queues.get_display(tx, display_id)
        return jsonify(display_state(tx, display, display_scope(display),
                                     runtime().settings.default_service_s))
