"""Desk and display endpoints: set-up, call-next, what a display shows."""

from __future__ import annotations

from flask import Response, jsonify

from ..bodies import Body, Empty, id_list, text
from ..domain import queues, tickets
from ..domain.display import display_scope, display_state, find_display
from ..domain.queues import PICK_MODES
from ..runtime import runtime
from . import blueprint
from .common import current_user, desk_json, page_of, read_body, require
from .queues import NAME_DOC, NAME_HELP
from .tickets import staff_view

PICK_MODE_HELP = ("queue_order: the desk's queues in its priority order; "
                  "oldest: the longest-waiting head across them")


class DeskCreate(Body):
    name = text(required=True, doc=NAME_DOC, description=NAME_HELP)
    queue_ids = id_list(required=True, min_items=1)
    pick_mode = text(enum=PICK_MODES, description=PICK_MODE_HELP)


class DeskUpdate(Body):
    """Only the fields given (and not null) change"""

    name = text(doc=NAME_DOC, description=NAME_HELP)
    queue_ids = id_list(min_items=1)
    pick_mode = text(enum=PICK_MODES, description=PICK_MODE_HELP)


class DisplayCreate(Body):
    name = text(required=True, doc=NAME_DOC, description=NAME_HELP)
    queue_ids = id_list()
    language = text(description="The display's language, e.g. fi: its page and spoken "
                                "announcements (default: the server's display language, "
                                "else the TV browser's)")


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
    body = read_body(DeskCreate)
    pick_mode = body.get("pick_mode")
    with runtime().store.write() as tx:
        desk = queues.create_desk(
            tx, name=body["name"], queue_ids=body["queue_ids"],
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
    body = read_body(DeskUpdate)
    with runtime().store.write() as tx:
        desk = queues.update_desk(
            tx, desk_id, name=body.get("name"), queue_ids=body.get("queue_ids"),
            pick_mode=body.get("pick_mode"))
    return jsonify(desk_json(desk))


@blueprint.post("/desks/<desk_id>/call-next")
@require("staff")
def call_next(desk_id: str) -> Response:
    """Call the next ticket for this desk; 404 ``queue_empty`` when none waits."""
    read_body(Empty, required=False)
    user_id = current_user()["id"]  # type: ignore[index]  # @require: never None
    with runtime().store.write() as tx:
        data = staff_view(tx, tickets.call_next(tx, desk_id, user_id=user_id))
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
    """Create a display ``{"name", "queue_ids"?, "language"?}`` (no queues: it shows them
    all)."""
    body = read_body(DisplayCreate)
    with runtime().store.write() as tx:
        display = queues.create_display(tx, name=body["name"], queue_ids=body.get("queue_ids"),
                                        language=body.get("language"))
    return jsonify(display), 201


@blueprint.get("/displays/<display_id>/state")
def get_display_state(display_id: str) -> Response:
    """Now serving per queue, the last calls and waiting counts, for a TV."""
    with runtime().store.read() as tx:
        display = find_display(tx, display_id)
        return jsonify(display_state(tx, display, display_scope(display),
                                     runtime().settings.default_service_s))
