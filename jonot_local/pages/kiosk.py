"""The kiosk at the entrance: ``/kiosk`` (every queue) and ``/kiosk/<id>`` (a kiosk set up
in admin: its queues, priority button, language, printing and return time).

Taking a number goes the API's way: ``tickets.join`` inside the per-client
``run_join``, so a registered kiosk (its ``jonot_device`` cookie) is
never limited and any other browser draws from the anonymous budget; a refusal
is a calm screen of its own (429). The join is an htmx POST with the CSRF
token (Flask-WTF's session cookie works without a staff session) that swaps
in the new ticket (``_ticket.html``): the code, queue, people ahead, the wait,
the clinic and a QR code of the ticket page; the screen returns by itself.
Each start screen carries a random key: a double tap, or a retried request,
answers the ticket the first tap made (``runtime().kiosk_keys``).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import segno
from flask import abort, g, render_template, request, url_for
from flask_babel import gettext, ngettext

from ..api.clients import client_address, current_device
from ..api.errors import ApiError, describe
from ..api.join_budget import run_join
from ..api.tickets import holder_view
from ..domain import devices, queues, tickets
from ..domain.errors import DomainError, NotFound
from ..domain.location import get_location
from ..domain.model import Queue
from ..runtime import runtime
from . import blueprint
from .common import is_htmx

KEY_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def kiosk_texts() -> dict[str, str]:
    """The strings the kiosk's script shows, in the kiosk's language."""
    return {
        "offline": gettext("The connection to the server was lost. Trying again…"),
    }


def _options(device_id: str | None) -> dict[str, Any]:
    """The kiosk's options (``/kiosk``: the defaults); 404 for no such live kiosk."""
    with runtime().store.read() as tx:
        if device_id is None:
            return devices.kiosk_defaults(tx)
        try:
            device = devices.get(tx, device_id)
        except NotFound:
            abort(404)
    if device["kind"] != "kiosk" or not device["active"]:
        abort(404)
    return dict(device["options"])


def _shown_queues(tx: Any, options: dict[str, Any]) -> list[Queue]:
    """The queues the kiosk shows, in kiosk order (or the kiosk's own order)."""
    every = queues.list_queues(tx)
    wanted = options.get("queue_ids")
    if not wanted:
        return every
    by_id = {q.id: q for q in every}
    return [by_id[q] for q in wanted if q in by_id]


def _is_this_kiosk(device_id: str | None) -> bool:
    device = current_device()
    return bool(device_id and device and device["kind"] == "kiosk" and device["id"] == device_id)


def _context(device_id: str | None, options: dict[str, Any]) -> dict[str, Any]:
    with runtime().store.read() as tx:
        shown = _shown_queues(tx, options)
        clinic = get_location(tx)["name"]
    join_url = (url_for("pages.kiosk_join", device_id=device_id) if device_id
                else url_for("pages.kiosk_join"))
    start_url = (url_for("pages.kiosk", device_id=device_id) if device_id
                 else url_for("pages.kiosk"))
    return {
        "clinic": clinic,
        "queues": shown,
        "priority_button": bool(options.get("priority_button")) and _is_this_kiosk(device_id),
        "join_url": join_url,
        "start_url": start_url,
        "key": secrets.token_urlsafe(16),
        "return_s": int(options.get("return_s") or devices.KIOSK_DEFAULTS["return_s"]),
        "config": {
            "start": start_url,
            "stream": url_for("api.public_events"),
            "return_s": int(options.get("return_s") or devices.KIOSK_DEFAULTS["return_s"]),
            "texts": kiosk_texts(),
        },
    }


def _set_language(options: dict[str, Any]) -> None:
    if options.get("language"):
        g.page_language = options["language"]


@blueprint.get("/kiosk", defaults={"device_id": None})
@blueprint.get("/kiosk/<device_id>")
def kiosk(device_id: str | None) -> Any:
    """The start screen: a large button per queue (closed ones shown closed), a name field.

    ``HX-Request: true`` gets the queue buttons alone (the script refreshes them
    when a queue changes), or with ``?part=start`` a fresh start screen (fresh key).
    """
    options = _options(device_id)
    _set_language(options)
    context = _context(device_id, options)
    if is_htmx():
        part = "_start.html" if request.args.get("part") == "start" else "_queues.html"
        return render_template(f"pages/kiosk/{part}", **context)
    return render_template("pages/kiosk/kiosk.html", **context)


@blueprint.get("/kiosk/<device_id>/pair")
def kiosk_pair(device_id: str) -> Any:
    """Make this browser the registered kiosk: ``?token=<the kiosk's credential>``.

    The credential (shown once when the kiosk was registered) is kept in the
    HttpOnly ``jonot_device`` cookie and the browser goes on to the kiosk, so
    the link is opened once on the kiosk itself; a wrong or revoked one is 404
    (``pairing.pair``).
    """
    from .pairing import pair, paired_response

    _, token = pair("kiosk", device_id)
    return paired_response(url_for("pages.kiosk", device_id=device_id), token)


@blueprint.post("/kiosk/join", defaults={"device_id": None})
@blueprint.post("/kiosk/<device_id>/join")
def kiosk_join(device_id: str | None) -> Any:
    """Take a number for the tapped queue; the ticket screen, or a refusal screen."""
    options = _options(device_id)
    _set_language(options)
    context = _context(device_id, options)
    queue_id = request.form.get("queue_id", "")
    name = (request.form.get("name") or "").strip() or None
    priority = request.form.get("priority") == "1" and context["priority_button"]
    key = request.form.get("key", "")
    try:
        if queue_id not in {q.id for q in context["queues"]}:
            raise NotFound(f"No queue with id {queue_id}.")
        if not KEY_RE.match(key):
            key = secrets.token_urlsafe(16)  # no usable key: an ordinary, single join
        device = current_device()
        client = f"device:{device['id']}" if device else f"address:{client_address()}"
        ticket_id, made_now = runtime().kiosk_keys.once(
            client, key, lambda: _join(queue_id, name, priority))
        with runtime().store.read() as tx:
            view = holder_view(tx, tickets.get(tx, ticket_id))
        printing = runtime().printing
        if made_now and options.get("printing", True) and printing is not None:
            printing.print_ticket(view, device=device)  # queued; never waits on paper
    except (ApiError, DomainError) as err:
        return _refusal(err, context)
    html = render_template("pages/kiosk/_ticket.html" if is_htmx() else "pages/kiosk/ticket.html",
                           **context, view=view, about=_about(view), ahead=_ahead(view),
                           qr=qr_svg(view["url"]))
    return html, 201


def _join(queue_id: str, name: str | None, priority: bool) -> str:
    ticket = run_join(None, lambda tx: tickets.join(tx, queue_id, source="kiosk", name=name,
                                                    priority=priority))
    return ticket.id


def _about(view: dict[str, Any]) -> str:
    from .ticket import about_minutes

    return about_minutes(view.get("estimated_wait_s"))


def _ahead(view: dict[str, Any]) -> str:
    position = view.get("position")
    if not position or position <= 1:
        return gettext("You are next")
    ahead = position - 1
    return ngettext("%(n)s person ahead of you", "%(n)s people ahead of you", ahead, n=ahead)


def qr_svg(url: str) -> str:
    """An inline SVG QR code of ``url`` (no XML declaration; scales with its box)."""
    return segno.make(url, error="m").svg_inline(scale=1, border=2, omitsize=True,
                                                  svgclass="qr", lineclass=None,
                                                  title=url)


def _refusal(err: ApiError | DomainError, context: dict[str, Any]) -> Any:
    """The calm screen for a join that did not happen (over budget, queue closed, …)."""
    failure = describe(err)
    status, headers = failure.status, dict(failure.headers)
    wait = int(headers.get("Retry-After", "0") or 0)
    if status == 429:
        title = gettext("Please ask at the front desk")
        message = gettext("Many numbers have been taken from this screen in a short time. "
                          "The staff at the front desk will help you.")
    elif status == 404:
        title = gettext("This queue is not available")
        message = gettext("Please choose another queue, or ask at the front desk.")
    else:
        title = gettext("No number could be taken")
        message = gettext("This queue is closed just now. Please ask at the front desk.")
    html = render_template("pages/kiosk/_problem.html" if is_htmx() else "pages/kiosk/problem.html",
                           **context, title=title, message=message, retry_after=wait)
    return html, status, headers
