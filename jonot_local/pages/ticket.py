"""The ticket page on the patient's phone: ``/t/<hash>``.

The hash is the bearer credential, so the page goes through ``held_ticket``
(the API's rate limit, 404 and time floor): an unknown hash gets the same
status and timing as the API's 404, as a page. The first paint is the holder's
view (as ``GET /api/v1/tickets/by-hash/<hash>``); the page's script then
follows ``/api/v1/tickets/by-hash/<hash>/events`` and renders the same JSON.
Cancelling is a script POST to the public JSON API, whose credential is the
same hash; no cookie is involved, so there is nothing for a forged form to ride.
The long form ``/<org>/<location>/<queue>/<hash>`` (from printed or cloud links)
redirects here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Response, abort, redirect, render_template, url_for
from flask_babel import gettext, ngettext
from werkzeug.wrappers import Response as BaseResponse

from ..api.errors import ApiError
from ..api.tickets import held_ticket, holder_view
from ..domain import tickets
from ..domain.location import get_location
from ..ids import is_ticket_hash
from ..runtime import runtime
from ..timeutil import parse_iso
from . import blueprint
from .assets import asset_url
from .common import is_htmx


def about_minutes(seconds: int | None) -> str:
    """The estimated wait in words: "about N minutes", rounded (to 5 above a quarter hour).

    The page's script applies the same rule (``ticket.js``: ``aboutMinutes``).
    """
    if seconds is None:
        return ""
    if seconds < 60:
        return gettext("less than a minute")
    minutes = round(seconds / 60)
    if minutes > 15:
        minutes = 5 * round(minutes / 5)
    return ngettext("about %(n)s minute", "about %(n)s minutes", minutes, n=minutes)


def ticket_texts() -> dict[str, Any]:
    """Every string the ticket page's script shows, in the request's language."""
    return {
        "states": state_labels(),
        "position": gettext("You are number %(position)s in the queue", position="{n}"),
        "next": gettext("You are next"),
        "less_than_minute": gettext("less than a minute"),
        "about_one": ngettext("about %(n)s minute", "about %(n)s minutes", 1, n="{n}"),
        "about_other": ngettext("about %(n)s minute", "about %(n)s minutes", 2, n="{n}"),
        "now_serving": gettext("Now serving: %(code)s", code="{code}"),
        "nobody_yet": gettext("No one has been called yet"),
        "your_turn": gettext("It's your turn"),
        "go_to": gettext("Go to %(desk)s", desk="{desk}"),
        "title_called": gettext("▶ %(code)s — your turn", code="{code}"),
        "reconnecting": gettext("Reconnecting…"),
        "cancel_failed": gettext("Cancelling did not work. Check your connection and try "
                                 "again."),
        "ended": ended_texts(),
        "pending": gettext("Your request is on its way to the clinic. Your number appears "
                           "here once the clinic has it."),
        "cancel_pending": gettext("Cancel requested; waiting for the clinic to confirm."),
        "updated_now": gettext("Updated just now"),
        "updated_one": ngettext("Updated %(n)s minute ago", "Updated %(n)s minutes ago", 1,
                                n="{n}"),
        "updated_other": ngettext("Updated %(n)s minute ago", "Updated %(n)s minutes ago", 2,
                                  n="{n}"),
        "stale_one": ngettext(
            "The clinic has not been heard from for %(n)s minute; what you see may be out "
            "of date.",
            "The clinic has not been heard from for %(n)s minutes; what you see may be out "
            "of date.", 1, n="{n}"),
        "stale_other": ngettext(
            "The clinic has not been heard from for %(n)s minute; what you see may be out "
            "of date.",
            "The clinic has not been heard from for %(n)s minutes; what you see may be out "
            "of date.", 2, n="{n}"),
        "stale_never": gettext("The clinic has not been heard from yet; what you see may be "
                               "out of date."),
        "reasons": {},
    }


def state_labels() -> dict[str, str]:
    return {
        "WAITING": gettext("Waiting"),
        "CALLED": gettext("Called"),
        "COMPLETED": gettext("Done"),
        "SKIPPED": gettext("Missed"),
        "CANCELED": gettext("Canceled"),
        "PENDING": gettext("On its way"),
        "REJECTED": gettext("Not given"),
        "RETIRED": gettext("No longer valid"),
    }


def ended_texts() -> dict[str, str]:
    return {
        "COMPLETED": gettext("Your visit is done. Thank you!"),
        "SKIPPED": gettext("You were called but did not come. Ask at the front desk, "
                           "or take a new number."),
        "CANCELED": gettext("This ticket was canceled. Take a new number if you still "
                            "need one."),
        "REJECTED": gettext("The clinic could not give you a number."),
        "RETIRED": gettext("The clinic no longer has this number."),
    }


@blueprint.get("/t/<ticket_hash>")
def ticket_page(ticket_hash: str) -> Any:
    """The holder's ticket: code, state, position, the wait, now serving; live."""
    rt = runtime()
    try:
        with held_ticket(ticket_hash) as ticket, rt.store.read() as tx:
            view = holder_view(tx, tickets.get(tx, ticket.id))
            clinic = get_location(tx)["name"]
    except ApiError as err:
        return problem_page(err)
    context = page_context(
        view, clinic, ticket_hash,
        stream=url_for("api.ticket_events", ticket_hash=ticket_hash),
        cancel=url_for("api.cancel_by_hash", ticket_hash=ticket_hash))
    if is_htmx():
        return render_template("pages/_ticket_status.html", **context)
    return render_template("pages/ticket.html", **context)


def page_context(view: dict[str, Any], clinic: str, ticket_hash: str, *, stream: str,
                 cancel: str, stale_after_s: float | None = None) -> dict[str, Any]:
    """What ``pages/ticket.html`` renders, on the office and on the cloud.

    ``stale_after_s`` is given by the cloud: its views carry ``updated_at_office``
    and the page then says how fresh they are (``freshness``), kept current by the script.
    """
    config: dict[str, Any] = {
        "hash": ticket_hash,
        "clinic": clinic,
        "stream": stream,
        "cancel": cancel,
        "chime": asset_url("display_assets.static", "chime.wav"),
        "texts": ticket_texts(),
        "view": view,
    }
    if stale_after_s is not None:
        config["stale_after_s"] = stale_after_s
        config["server_now"] = datetime.now(UTC).isoformat()
    return {
        "clinic": clinic,
        "view": view,
        "states": state_labels(),
        "ended": ended_texts(),
        "about": about_minutes(view["estimated_wait_s"]),
        "message": reason_text(view.get("message")),
        "freshness": (freshness(view.get("updated_at_office"), stale_after_s)
                      if stale_after_s is not None else None),
        "config": config,
    }


def reason_text(message: str | None) -> str:
    """A refusal or note of the cloud (``sync.cloud.relay.REASONS``) in the page's language."""
    return gettext(message) if message else ""


def freshness(updated_at: str | None, stale_after_s: float,
              now: datetime | None = None) -> dict[str, Any]:
    """How fresh the cloud's copy is: ``stale`` and the sentence saying so.

    The page's script applies the same rule every half minute (``ticket.js``: ``freshness``).
    """
    if updated_at is None:
        return {"stale": True, "text": gettext("The clinic has not been heard from yet; what "
                                               "you see may be out of date.")}
    quiet = ((now or datetime.now(UTC)) - parse_iso(updated_at)).total_seconds()
    minutes = max(0, int(quiet // 60))
    if quiet > stale_after_s:
        minutes = max(1, minutes)
        return {"stale": True, "text": ngettext(
            "The clinic has not been heard from for %(n)s minute; what you see may be out "
            "of date.",
            "The clinic has not been heard from for %(n)s minutes; what you see may be out "
            "of date.", minutes, n=minutes)}
    if minutes < 1:
        return {"stale": False, "text": gettext("Updated just now")}
    return {"stale": False, "text": ngettext("Updated %(n)s minute ago",
                                             "Updated %(n)s minutes ago", minutes, n=minutes)}


def problem_page(err: ApiError) -> Response:
    """The ticket page's own look for an unknown hash (404) or a client over budget (429)."""
    wait = int(err.headers.get("Retry-After", "0") or 0)
    if err.status == 429:
        title = gettext("Too many requests")
        message = ngettext("Wait %(n)s second, then this page tries again by itself.",
                           "Wait %(n)s seconds, then this page tries again by itself.", wait,
                           n=wait)
    else:
        title = gettext("No ticket has this link")
        message = gettext("Check the address, or take a new number at the kiosk.")
    html = render_template("pages/ticket_problem.html", title=title, message=message,
                           retry_after=wait if err.status == 429 else 0)
    resp = Response(html, status=err.status, mimetype="text/html")
    for key, value in err.headers.items():
        resp.headers[key] = value
    return resp


@blueprint.get("/<page_segment:org>/<location>/<queue>/<ticket_hash>")
def ticket_long_link(org: str, location: str, queue: str, ticket_hash: str) -> BaseResponse:
    """``/<org>/<location id>/<queue id>/<hash>``: the printed or cloud form of a ticket link.

    Only the hash names the ticket (the other parts say where it was taken and are
    not trusted); anything that is not shaped like one is an ordinary 404.
    """
    if not is_ticket_hash(ticket_hash):
        abort(404)
    return redirect(url_for("pages.ticket_page", ticket_hash=ticket_hash), code=301)
