"""Ticket endpoints: join, holder look-up and cancel by hash, staff list and actions."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Response, jsonify, request, url_for

from ..bodies import VERSION_HELP, Body, choice, integer, listing, text
from ..domain import listing as ticket_listing
from ..domain import status, tickets
from ..domain.errors import ValidationError
from ..domain.model import SOURCES, Ticket
from ..domain.transitions import Transition
from ..ids import is_ticket_hash
from ..runtime import runtime
from ..timeutil import parse_iso, to_iso
from . import blueprint
from .clients import current_device
from .common import current_user, json_response, page_args, read_body, require, ticket_json
from .errors import ApiError
from .join_budget import run_join
from .ratelimit import HashLookupLimits


def ticket_page_url(ticket_hash: str) -> str:
    """The absolute URL of the ticket page for this hash (as the client reached us)."""
    return _request_urls()[0] + "/t/" + ticket_hash


# The request's scheme, host and script root as the server gave them → (host URL
# without its slash, by-hash path up to the hash): werkzeug's URL building normalises
# the host every time (a tenth of a join's time); the few hosts an office is reached by
# are remembered.
_URLS: dict[tuple[Any, ...], tuple[str, str]] = {}
_URLS_MAX = 64


def _request_urls() -> tuple[str, str]:
    environ = request.environ  # what scheme, host and script root are made of
    key = (environ.get("wsgi.url_scheme"), environ.get("HTTP_HOST"),
           environ.get("SERVER_NAME"), environ.get("SERVER_PORT"), environ.get("SCRIPT_NAME"))
    urls = _URLS.get(key)
    if urls is None:
        urls = (request.host_url.rstrip("/"),
                url_for("api.by_hash", ticket_hash="_")[:-1])  # hashes need no quoting
        if len(_URLS) >= _URLS_MAX:  # the Host header is the client's: bounded
            _URLS.clear()
        _URLS[key] = urls
    return urls


def cloud_page_url(ticket_hash: str) -> str | None:
    """The same ticket's page on the cloud copy when sync is on (``JONOT_CLOUD_URL`` and
    a token set), else None. The path is the office's own: only the host differs."""
    settings = runtime().settings
    if not (settings.cloud_url and settings.cloud_token):
        return None
    return settings.cloud_url.rstrip("/") + "/t/" + ticket_hash


def holder_view(tx: Any, ticket: Ticket, position: int | None = None) -> dict[str, Any]:
    """What the ticket holder may see: the ticket without staff notes, plus its status.

    ``position``: the ticket's position when known (see ``status.ticket_status``).
    """
    settings = runtime().settings
    data = ticket_json(ticket, private=False)
    data.update(status.ticket_status(tx, ticket, settings.default_service_s, position))
    data["url"] = ticket_page_url(ticket.hash)
    data["cloud_url"] = cloud_page_url(ticket.hash)
    return data


def staff_view(tx: Any, ticket: Ticket, position: int | None = None) -> dict[str, Any]:
    """What staff see of a ticket: every field, plus its position, wait and now serving."""
    data = ticket_json(ticket)
    data.update(status.ticket_status(tx, ticket, runtime().settings.default_service_s,
                                     position))
    return data


# -- request bodies ---------------------------------------------------------------------

LABEL_IN = {
    "anyOf": [
        {"type": "string", "minLength": 1, "maxLength": 32},
        {"type": "object", "properties": {
            "value": {"type": "string", "minLength": 1, "maxLength": 32},
            "color": {"type": ["string", "null"],
                      "pattern": "^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"},
            "public": {"type": ["boolean", "null"]},
        }, "required": ["value"]},
    ],
    "description": "A tag: a string, or {value, color, public}; the colour defaults to grey; "
                   "labels are staff-only unless public is true",
}
EXTRA_IN = {"type": "object", "properties": {
    "title": {"type": "string", "minLength": 1, "maxLength": 60},
    "value": {"type": "string", "maxLength": 500},
}, "required": ["title"]}
PRIORITY_IN = {"type": ["string", "boolean"], "enum": ["normal", "priority", True, False]}


def _priority(*, nullable: bool, description: str | None = None) -> Any:
    schema = {**PRIORITY_IN, **({"description": description} if description else {})}
    return choice(schema, lambda v: isinstance(v, bool) or v in ("normal", "priority"),
                  "must be 'priority' or 'normal'", nullable=nullable)


def _labels() -> Any:
    return listing(LABEL_IN, max_items=tickets.MAX_LABELS)


def _extra() -> Any:
    return listing(EXTRA_IN, max_items=tickets.MAX_EXTRA)


class JoinRequest(Body):
    name = text(doc={"maxLength": tickets.MAX_NAME})
    phone = text(doc={"maxLength": tickets.MAX_PHONE})
    priority = _priority(nullable=True, description="Staff only: priority tickets are served "
                                                    "first within the queue")
    source = text(enum=SOURCES, description="Anonymous callers: kiosk or remote (the "
                                            "default); staff: any (default desk)")
    labels = _labels()
    extra = _extra()
    notes = text(doc={"maxLength": tickets.MAX_NOTES}, description="Staff only")


class TicketUpdate(Body):
    """Only the fields given change; null clears a text, label or extra field"""

    version = integer(required=True, description=VERSION_HELP)
    name = text(doc={"maxLength": tickets.MAX_NAME})
    phone = text(doc={"maxLength": tickets.MAX_PHONE})
    notes = text(doc={"maxLength": tickets.MAX_NOTES})
    labels = _labels()
    extra = _extra()
    priority = _priority(nullable=False)


# -- join ------------------------------------------------------------------------------

ANONYMOUS_SOURCES = ("kiosk", "remote")


@blueprint.post("/queues/<queue_id>/tickets")
def join(queue_id: str) -> Response:
    """Take a number. Anyone may join; only staff may set priority, notes or another source.

    Anonymous callers (kiosk, phone) get the ticket without personal fields echoed.
    """
    body = read_body(JoinRequest, required=False)
    user = current_user()
    source = body.get("source")
    priority = (tickets.parse_priority(body["priority"]) if body.get("priority") is not None
                else False)
    notes = body.get("notes")
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
    name, phone, extra, labels = (body.get("name"), body.get("phone"), body.get("extra"),
                                  body.get("labels"))
    # The block may run in another join's thread (Store.run): everything it needs is here.
    joined = run_join(user, lambda tx: tickets.issue(
        tx, queue_id, source=source, name=name, phone=phone, priority=priority,
        extra=extra, labels=labels, notes=notes or ""))
    # The answer needs no statement of its own: the join read its position, queue and
    # now serving (the holder's view for anonymous callers, the staff view otherwise).
    rt = runtime()
    ticket = joined.ticket
    data = ticket_json(ticket, private=user is not None)
    data.update(status.status_of(joined.queue, joined.position, joined.desks,
                                 joined.now_serving, rt.settings.default_service_s))
    host_url, by_hash = _request_urls()
    data["url"] = host_url + "/t/" + ticket.hash  # as ticket_page_url
    data["cloud_url"] = cloud_page_url(ticket.hash)
    printing = rt.printing
    if source == "kiosk" and printing is not None:
        printing.print_ticket(data, device=current_device())  # queued; never waits on paper
    # The Location is url_for("api.by_hash", …): the host, quoted paths and a hash of
    # URL-safe characters.
    return json_response(data, 201, location=by_hash + ticket.hash)


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
    flt = ticket_listing.TicketFilter(
        queue_ids=_csv_arg("queue"),
        states=[v.upper() for v in _csv_arg("state")],
        sources=_csv_arg("source"),
        created_after=_time_arg("created_after"),
        created_before=_time_arg("created_before"),
    )
    sort = request.args.get("sort") or "-created_at"
    limit, offset = page_args()
    with runtime().store.read() as tx:
        total, found = ticket_listing.list_tickets(tx, flt, sort=sort, limit=limit, offset=offset)
    return jsonify({"items": [ticket_json(t) for t in found], "total": total,
                    "limit": limit, "offset": offset})


@blueprint.get("/tickets/<ticket_id>")
@require("staff")
def ticket_detail(ticket_id: str) -> Response:
    """One ticket with its interactions and current position."""
    with runtime().store.read() as tx:
        data = staff_view(tx, tickets.get(tx, ticket_id))
        data["interactions"] = [i.as_dict() for i in tickets.interactions(tx, ticket_id)]
    return jsonify(data)


# -- staff actions: one route per registered transition ---------------------------------

def _transition_view(action: Transition) -> Callable[[str], Response]:
    """The view of ``POST /tickets/{id}/<action>``: the body checked, the action run."""
    fields = action.body.fields
    records_user = action.records_user

    def view(ticket_id: str) -> Response:
        body = read_body(action.body, required=False)
        # null means "not given", except for required fields such as reorder's ``after``.
        args = {k: v for k, v in body.items() if v is not None or fields[k].required}
        args.update(action.staff_args)
        settings = runtime().settings
        args.update({param: make(settings) for param, make in action.settings.items()})
        if records_user:
            args["user_id"] = current_user()["id"]  # type: ignore[index]  # @require: never None
        with runtime().store.write() as tx:
            data = staff_view(tx, action.fn(tx, ticket_id, **args))
        return jsonify(data)

    view.__name__ = f"ticket_{action.name}"
    view.__doc__ = f"Staff action: {action.summary}."
    return view


for _action in tickets.TRANSITIONS.values():
    _view = _transition_view(_action)
    blueprint.add_url_rule(f"/tickets/<ticket_id>/{_action.name}", _view.__name__,
                           require("staff")(_view), methods=["POST"])


@blueprint.patch("/tickets/<ticket_id>")
@require("staff")
def edit_ticket(ticket_id: str) -> Response:
    """Edit name, phone, notes, labels, extra or priority; needs the current ``version``."""
    body = read_body(TicketUpdate)
    changes = {k: v for k, v in body.items() if k != "version"}
    with runtime().store.write() as tx:
        data = staff_view(tx, tickets.update(tx, ticket_id, version=body["version"], **changes))
    return jsonify(data)
