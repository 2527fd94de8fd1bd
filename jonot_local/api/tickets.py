"""Ticket endpoints: join, holder look-up and cancel by hash, staff list and actions."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from flask import Response, jsonify, request, url_for

from ..domain import listing, status, tickets
from ..domain.errors import NotFound, ValidationError
from ..domain.model import SOURCES, Ticket
from ..ids import is_ticket_hash
from ..runtime import runtime
from ..timeutil import parse_iso, to_iso
from . import blueprint
from .common import current_user, field_type, json_body, page_args, require, ticket_json
from .errors import ApiError
from .ratelimit import HashLookupLimits


def ticket_page_url(ticket_hash: str) -> str:
    """The absolute URL of the ticket page for this hash (as the client reached us)."""
    return request.host_url.rstrip("/") + "/t/" + ticket_hash


def holder_view(tx: Any, ticket: Ticket) -> dict[str, Any]:
    """What the ticket holder may see: the ticket without staff notes, plus its status."""
    settings = runtime().settings
    data = ticket_json(ticket, private=False)
    data.update(status.ticket_status(tx, ticket, settings.default_service_s))
    data["url"] = ticket_page_url(ticket.hash)
    return data


# -- join ------------------------------------------------------------------------------

JOIN_FIELDS = ("name", "phone", "priority", "source", "labels", "extra", "notes")
ANONYMOUS_SOURCES = ("kiosk", "remote")


@blueprint.post("/queues/<queue_id>/tickets")
def join(queue_id: str) -> tuple[Response, int]:
    """Take a number. Anyone may join; only staff may set priority, notes or another source.

    Anonymous callers (kiosk, phone) get the ticket without personal fields echoed.
    """
    body = json_body(required=False, allowed=JOIN_FIELDS)
    user = current_user()
    source = field_type(body, "source", str)
    if source is not None and source not in SOURCES:
        raise ValidationError.field("source", f"must be one of {', '.join(SOURCES)}")
    priority = (tickets.parse_priority(body["priority"]) if body.get("priority") is not None
                else False)
    notes = field_type(body, "notes", str)
    if user is None:
        source = source or "remote"
        if source not in ANONYMOUS_SOURCES:
            raise ApiError(403, "forbidden", f"Only staff can create {source} tickets.")
        if priority:
            raise ApiError(403, "forbidden", "Only staff can give a ticket priority.")
        if notes:
            raise ApiError(403, "forbidden", "Only staff can add notes to a ticket.")
    else:
        source = source or "desk"
    store = runtime().store
    with store.write() as tx:
        ticket = tickets.join(
            tx, queue_id, source=source,
            name=field_type(body, "name", str),
            phone=field_type(body, "phone", str),
            priority=priority,
            extra=field_type(body, "extra", list),
            labels=field_type(body, "labels", list),
            notes=notes or "",
        )
        data = ticket_json(ticket, private=user is not None)
        data.update(status.ticket_status(tx, ticket, runtime().settings.default_service_s))
    data["url"] = ticket_page_url(ticket.hash)
    resp = jsonify(data)
    resp.headers["Location"] = url_for("api.by_hash", ticket_hash=ticket.hash)
    return resp, 201


# -- holder (by hash) ---------------------------------------------------------------------

def _limits() -> HashLookupLimits:
    return runtime().hash_limits  # built in create_app


def _client_key() -> str:
    """The client's address (behind ``trusted_proxies``, from X-Forwarded-For)."""
    return request.remote_addr or "unknown"


def lookup_by_hash(ticket_hash: str) -> tuple[Ticket | None, float]:
    """Rate-limit, then find the ticket for a hash. Returns it (or ``None``) and the start time.

    Raises ``ApiError`` 429 when the client is over a budget.
    """
    started = time.monotonic()
    limits = _limits()
    key = _client_key()
    wait = limits.admit(key)
    if wait:
        raise ApiError(429, "rate_limited",
                       f"Too many look-ups from this address; try again in {wait} s.",
                       headers={"Retry-After": str(wait)})
    ticket = None
    if is_ticket_hash(ticket_hash):
        with runtime().store.read() as tx:
            ticket = tickets.find_by_hash(tx, ticket_hash)
    if ticket is None:
        limits.missed(key)
    return ticket, started


def pad_response_time(started: float) -> None:
    """Answer no sooner than the configured floor, found or not."""
    floor = runtime().settings.hash_lookup_floor_ms / 1000.0
    left = floor - (time.monotonic() - started)
    if left > 0:
        time.sleep(left)


def unknown_hash_error() -> ApiError:
    return ApiError(404, "not_found",
                    "No ticket has this link. Check the address, or take a new number.")


@contextlib.contextmanager
def held_ticket(ticket_hash: str) -> Iterator[Ticket]:
    """The ticket a holder's hash names, for the ``with`` block; 404 when there is none.

    Rate limited (``lookup_by_hash``), and the response leaves no sooner than the
    time floor whether the hash exists or not, also when the block raises.
    """
    ticket, started = lookup_by_hash(ticket_hash)
    try:
        if ticket is None:
            raise unknown_hash_error()
        yield ticket
    finally:
        pad_response_time(started)


@blueprint.get("/tickets/by-hash/<ticket_hash>")
def by_hash(ticket_hash: str) -> Response:
    """The holder's view of their ticket: state, position, estimated wait, now serving."""
    with held_ticket(ticket_hash) as ticket, runtime().store.read() as tx:
        return jsonify(holder_view(tx, tickets.get(tx, ticket.id)))


@blueprint.post("/tickets/by-hash/<ticket_hash>/cancel")
def cancel_by_hash(ticket_hash: str) -> Response:
    """The holder gives up their place; 409 when the ticket has already ended."""
    with held_ticket(ticket_hash) as ticket, runtime().store.write() as tx:
        canceled = tickets.cancel(tx, ticket.id, by="customer")
        return jsonify(holder_view(tx, canceled))


# -- staff ------------------------------------------------------------------------------

def _csv_arg(name: str) -> list[str]:
    """A comma-separated query parameter as a list (empty when absent)."""
    raw = request.args.get(name) or ""
    return [v.strip() for v in raw.split(",") if v.strip()]


def _time_arg(name: str) -> str | None:
    """An ISO 8601 query parameter in the stored UTC form, else a 422."""
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        return to_iso(parse_iso(raw))
    except (ValueError, OverflowError):
        raise ValidationError.field(name, "must be an ISO 8601 timestamp") from None


@blueprint.get("/tickets")
@require("staff")
def list_tickets() -> Response:
    """Filtered, paginated tickets with the total count.

    Filters: ``queue``, ``state`` (any case) and ``source``, comma-separated lists;
    ``created_after`` (inclusive) / ``created_before`` (exclusive), ISO 8601;
    ``sort`` one of ``listing.SORTS``; ``limit`` (1..500, default 50) and ``offset``.
    """
    flt = listing.TicketFilter(
        queue_ids=_csv_arg("queue"),
        states=[v.upper() for v in _csv_arg("state")],
        sources=_csv_arg("source"),
        created_after=_time_arg("created_after"),
        created_before=_time_arg("created_before"),
    )
    sort = request.args.get("sort") or "-created_at"
    limit, offset = page_args()
    with runtime().store.read() as tx:
        total, found = listing.list_tickets(tx, flt, sort=sort, limit=limit, offset=offset)
    return jsonify({"items": [ticket_json(t) for t in found], "total": total,
                    "limit": limit, "offset": offset})


@blueprint.get("/tickets/<ticket_id>")
@require("staff")
def ticket_detail(ticket_id: str) -> Response:
    """One ticket with its interactions and current position."""
    settings = runtime().settings
    with runtime().store.read() as tx:
        ticket = tickets.get(tx, ticket_id)
        data = ticket_json(ticket)
        data.update(status.ticket_status(tx, ticket, settings.default_service_s))
        data["interactions"] = [i.as_dict() for i in tickets.interactions(tx, ticket_id)]
    return jsonify(data)


ACTION_FIELDS: dict[str, tuple[str, ...]] = {
    "call": ("desk_id", "version"),
    "recall": ("version",),
    "complete": ("version",),
    "skip": ("version",),
    "cancel": ("version",),
    "return": ("version",),
    "transfer": ("queue_id", "to_front", "version"),
    "reorder": ("after", "version"),
}
EDIT_FIELDS = ("version", "name", "phone", "notes", "labels", "extra", "priority")


def _staff_action(ticket_id: str, action: str) -> Response:
    body = json_body(required=False, allowed=ACTION_FIELDS[action])
    version = field_type(body, "version", int)
    user_id = current_user()["id"]  # type: ignore[index]  # @require: never None
    settings = runtime().settings
    with runtime().store.write() as tx:
        if action == "call":
            desk_id = field_type(body, "desk_id", str, required=True)
            ticket = tickets.call(tx, ticket_id, desk_id, user_id=user_id, version=version)
        elif action == "recall":
            ticket = tickets.recall(tx, ticket_id, user_id=user_id, version=version)
        elif action == "complete":
            ticket = tickets.complete(tx, ticket_id, user_id=user_id, version=version,
                                      service=status.ServiceEstimator.from_settings(settings))
        elif action == "skip":
            ticket = tickets.skip(tx, ticket_id, user_id=user_id, version=version)
        elif action == "cancel":
            ticket = tickets.cancel(tx, ticket_id, by="staff", version=version)
        elif action == "return":
            ticket = tickets.return_to_queue(tx, ticket_id, user_id=user_id, version=version)
        elif action == "transfer":
            queue_id = field_type(body, "queue_id", str, required=True)
            to_front = bool(field_type(body, "to_front", bool))
            ticket = tickets.transfer(tx, ticket_id, queue_id, user_id=user_id,
                                      version=version, to_front=to_front)
        elif action == "reorder":
            if "after" not in body:
                raise ValidationError.field("after", "is required (a ticket id, or null for "
                                            "the front)")
            ticket = tickets.reorder(tx, ticket_id, after=field_type(body, "after", str),
                                     version=version)
        else:  # pragma: no cover - routes below only pass known actions
            raise NotFound(f"Unknown action {action}.")
        data = ticket_json(ticket)
        data.update(status.ticket_status(tx, ticket, settings.default_service_s))
    return jsonify(data)


def _register_action(action: str) -> None:
    def view(ticket_id: str) -> Response:
        return _staff_action(ticket_id, action)

    view.__name__ = f"ticket_{action}"
    view.__doc__ = f"Staff action: {action} the ticket."
    blueprint.add_url_rule(f"/tickets/<ticket_id>/{action}", view.__name__,
                           require("staff")(view), methods=["POST"])


for _action in ACTION_FIELDS:
    _register_action(_action)


@blueprint.patch("/tickets/<ticket_id>")
@require("staff")
def edit_ticket(ticket_id: str) -> Response:
    """Edit name, phone, notes, labels, extra or priority; needs the current ``version``."""
    body = json_body(allowed=EDIT_FIELDS)
    version = field_type(body, "version", int, required=True)
    changes = {k: v for k, v in body.items() if k != "version"}
    settings = runtime().settings
    with runtime().store.write() as tx:
        ticket = tickets.update(tx, ticket_id, version=version, **changes)
        data = ticket_json(ticket)
        data.update(status.ticket_status(tx, ticket, settings.default_service_s))
    return jsonify(data)
