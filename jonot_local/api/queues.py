"""Queue endpoints: the public list, and admin create/update/close."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from ..domain import queues, status
from ..runtime import runtime
from . import blueprint
from .common import SORT_ORDER_MAX, SORT_ORDER_MIN, field_type, json_body, page_of, require

QUEUE_FIELDS = ("name", "prefix", "colour", "open", "sort_order")


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
    body = json_body(allowed=QUEUE_FIELDS)
    with runtime().store.write() as tx:
        queue = queues.create_queue(
            tx, name=field_type(body, "name", str, required=True),
            prefix=field_type(body, "prefix", str, required=True),
            colour=field_type(body, "colour", str),
            is_open=field_type(body, "open", bool) is not False,
            sort_order=_sort_order(body))
        data = _summary(tx, queue)
    return jsonify(data), 201


@blueprint.patch("/queues/<queue_id>")
@require("admin")
def update_queue(queue_id: str) -> Response:
    """Change name, prefix, colour, ``open`` (close/open) or ``sort_order``."""
    body = json_body(allowed=QUEUE_FIELDS)
    changes = {
        "name": field_type(body, "name", str),
        "prefix": field_type(body, "prefix", str),
        "colour": field_type(body, "colour", str),
        "is_open": field_type(body, "open", bool),
        "sort_order": _sort_order(body),
    }
    with runtime().store.write() as tx:
        queue = queues.update_queue(tx, queue_id, **changes)
        data = _summary(tx, queue)
    return jsonify(data)


def _sort_order(body: dict[str, Any]) -> int | None:
    return field_type(body, "sort_order", int, minimum=SORT_ORDER_MIN, maximum=SORT_ORDER_MAX)
