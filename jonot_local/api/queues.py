"""Queue endpoints: the public list, and admin create/update/close."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from ..bodies import Body, boolean, integer, text
from ..domain import queues, status
from ..runtime import runtime
from . import blueprint
from .common import SORT_ORDER_MAX, SORT_ORDER_MIN, page_of, read_body, require

NAME_DOC = {"minLength": 1, "maxLength": 80}
NAME_HELP = "Trimmed; 1 to 80 characters"
PREFIX_DOC = {"pattern": "^[A-Za-z]{1,3}$"}
PREFIX_HELP = "1 to 3 letters, stored in capitals; unique in the office"
COLOUR_DOC = {"pattern": "^#[0-9a-fA-F]{6}$"}


class QueueCreate(Body):
    name = text(required=True, doc=NAME_DOC, description=NAME_HELP)
    prefix = text(required=True, doc=PREFIX_DOC, description=PREFIX_HELP)
    colour = text(doc=COLOUR_DOC)
    open = boolean()
    sort_order = integer(minimum=SORT_ORDER_MIN, maximum=SORT_ORDER_MAX,
                         description="Order on the kiosk")


class QueueUpdate(Body):
    """Only the fields given (and not null) change"""

    name = text(doc=NAME_DOC, description=NAME_HELP)
    prefix = text(doc=PREFIX_DOC, description=PREFIX_HELP)
    colour = text(doc=COLOUR_DOC)
    open = boolean(description="false closes the queue to new tickets")
    sort_order = QueueCreate.fields["sort_order"]


def _summary(tx: Any, queue: Any) -> dict[str, Any]:
    return status.queue_summary(tx, queue, runtime().settings.default_service_s)


@blueprint.get("/queues")
def list_queues() -> Response:
    """A page of queues in kiosk order: waiting count, now serving, wait for a newcomer."""
    with runtime().store.read() as tx:
        page = page_of(queues.list_queues(tx))
        page["items"] = [_summary(tx, q) for q in page["items"]]
    return jsonify(page)


@blueprint.get("/queues/<queue_id>")
def get_queue(queue_id: str) -> Response:
    """One queue's public summary."""
    with runtime().store.read() as tx:
        return jsonify(_summary(tx, queues.get_queue(tx, queue_id)))


@blueprint.post("/queues")
@require("admin")
def create_queue() -> tuple[Response, int]:
    """Create a queue ``{"name", "prefix", "colour"?, "open"?, "sort_order"?}``."""
    body = read_body(QueueCreate)
    with runtime().store.write() as tx:
        queue = queues.create_queue(
            tx, name=body["name"], prefix=body["prefix"], colour=body.get("colour"),
            is_open=body.get("open") is not False, sort_order=body.get("sort_order"))
        data = _summary(tx, queue)
    return jsonify(data), 201


@blueprint.patch("/queues/<queue_id>")
@require("admin")
def update_queue(queue_id: str) -> Response:
    """Change name, prefix, colour, ``open`` (close/open) or ``sort_order``."""
    body = read_body(QueueUpdate)
    changes = {
        "name": body.get("name"),
        "prefix": body.get("prefix"),
        "colour": body.get("colour"),
        "is_open": body.get("open"),
        "sort_order": body.get("sort_order"),
    }
    with runtime().store.write() as tx:
        queue = queues.update_queue(tx, queue_id, **changes)
        data = _summary(tx, queue)
    return jsonify(data)
