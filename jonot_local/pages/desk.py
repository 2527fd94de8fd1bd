"""The staff desk: ``/desk`` — choose a desk, then call, serve and order its queues.

Every action goes through the domain functions the API uses (the transitions
registry of ``domain/tickets.py``, ``tickets.call_next``, ``tickets.update``),
with the signed-in account as who acted. The page is server-rendered; its two
live parts are partials (``desk/_current.html``, ``desk/_waiting.html``) that a
request with ``HX-Request: true`` gets alone. An action answers with the current
panel and the waiting list (out of band), so the screen is never left stale;
a refused action (the queue is empty, another desk took the ticket, someone
changed it first) answers with the banner in the visitor's language and an
``HX-Trigger: desk-stale`` header that makes the page fetch both parts again.

The chosen desk is kept in its own long-lived cookie (``jonot_desk``), apart
from the session: signing out, or a session that expires and signs in again,
comes back to the same desk.
"""

from __future__ import annotations

from typing import Any

from flask import make_response, redirect, render_template, request, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response as BaseResponse

from ..api.errors import ApiError
from ..domain import listing, queues, tickets
from ..domain.errors import InvalidTransition, NotFound, QueueEmpty, VersionConflict
from ..domain.model import CALLED, WAITING, Desk, Ticket
from ..runtime import runtime
from ..timeutil import parse_iso, utcnow
from . import blueprint
from .common import is_htmx
from .session import current_staff, staff_page

DESK_COOKIE = "jonot_desk"
DESK_COOKIE_AGE = 400 * 24 * 3600  # browsers cap cookie lifetimes at about 400 days
LIST_LIMIT = 500
# Actions on a ticket taken from the registry by name, and the shortcut key of each
# frequent one (shown on its button; the page's script presses it).
TICKET_ACTIONS = ("call", "recall", "complete", "skip", "return", "transfer")
SHORTCUTS = {"call_next": "n", "recall": "r", "complete": "c", "skip": "s", "return": "b",
             "transfer": "t"}
STALE_TRIGGER = "desk-stale"


# -- reading -------------------------------------------------------------------------

def label_text_colour(colour: str) -> str:
    """Black or white, whichever reads better on a label of this background colour."""
    value = colour.lstrip("#")
    if len(value) != 6:
        return "#000000"
    channels = []
    for i in (0, 2, 4):
        c = int(value[i:i + 2], 16) / 255
        channels.append(c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4)
    luminance = 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]
    return "#000000" if luminance > 0.179 else "#ffffff"


def elapsed_words(since: str | None, until: str | None = None) -> str:
    """How long since ``since`` (until now, or ``until``) in minutes ("4 min", "1 h 05 min");
    the page's script keeps the running ones going."""
    if not since:
        return ""
    end = parse_iso(until) if until else utcnow()
    seconds = max(0, int((end - parse_iso(since)).total_seconds()))
    minutes = seconds // 60
    if minutes < 1:
        return gettext("under 1 min")
    if minutes < 60:
        return gettext("%(m)s min", m=minutes)
    return gettext("%(h)s h %(m)s min", h=minutes // 60, m=f"{minutes % 60:02d}")


def clock_words(since: str | None) -> str:
    """A running timer's first paint: ``m:ss`` (``h:mm:ss`` past an hour)."""
    if not since:
        return ""
    seconds = max(0, int((utcnow() - parse_iso(since)).total_seconds()))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _desk_state(tx: Any, desk: Desk) -> dict[str, Any]:
    """What the desk page shows: its queues with their waiting tickets, the called ones."""
    all_queues = queues.list_queues(tx)
    by_id = {q.id: q for q in all_queues}
    served = [by_id[qid] for qid in desk.queue_ids if qid in by_id]
    groups: list[dict[str, Any]] = []
    total = 0
    for queue in served:
        _, waiting = listing.list_tickets(
            tx, listing.TicketFilter(queue_ids=[queue.id], states=[WAITING]),
            sort="queue", limit=LIST_LIMIT)
        rows: list[dict[str, Any]] = []
        for i, ticket in enumerate(waiting):
            before = waiting[i - 1] if i else None
            after = waiting[i + 1] if i + 1 < len(waiting) else None
            rows.append({
                "ticket": ticket,
                "up": before is not None and before.priority == ticket.priority,
                "down": after is not None and after.priority == ticket.priority,
                "front": before is not None and before.priority == ticket.priority,
            })
        groups.append({"queue": queue, "rows": rows})
        total += len(rows)
    _, called = listing.list_tickets(
        tx, listing.TicketFilter(queue_ids=list(by_id), states=[CALLED]),
        sort="-called_at", limit=LIST_LIMIT)
    here = [t for t in called if t.desk_id == desk.id]
    return {
        "desk": desk,
        "groups": groups,
        "waiting_total": total,
        "current": here[0] if here else None,
        "also_called": here[1:],
        "queues_by_id": by_id,
        "transfer_queues": all_queues,
    }


def _context(desk: Desk, **more: Any) -> dict[str, Any]:
    with runtime().store.read() as tx:
        state = _desk_state(tx, desk)
    return {**state, "staff": current_staff(), "keys": SHORTCUTS,
            "label_text_colour": label_text_colour, "elapsed": elapsed_words,
            "clock": clock_words, "edit": None, **more}


def _chosen_desk() -> Desk | None:
    desk_id = request.cookies.get(DESK_COOKIE)
    if not desk_id:
        return None
    try:
        with runtime().store.read() as tx:
            return queues.get_desk(tx, desk_id)
    except NotFound:
        return None


def _desk(desk_id: str) -> Desk:
    with runtime().store.read() as tx:
        return queues.get_desk(tx, desk_id)


def _remember(resp: BaseResponse, desk_id: str) -> BaseResponse:
    resp.set_cookie(DESK_COOKIE, desk_id, max_age=DESK_COOKIE_AGE, httponly=True,
                    samesite="Lax", path="/")
    return resp


def desk_texts() -> dict[str, str]:
    """The strings the desk's script shows, in the request's language."""
    return {
        "reconnecting": gettext("Reconnecting…"),
        "failed": gettext("The server did not answer. Check the connection and try again."),
        "under_min": gettext("under 1 min"),
        "min": gettext("%(m)s min", m="{m}"),
        "h_min": gettext("%(h)s h %(m)s min", h="{h}", m="{m}"),
    }


# -- pages -----------------------------------------------------------------------------

@blueprint.get("/desk")
@staff_page()
def desk() -> Any:
    """The chosen desk (remembered in a cookie), or the list of desks to choose from."""
    chosen = None if request.args.get("choose") else _chosen_desk()
    if chosen is None:
        with runtime().store.read() as tx:
            desks = queues.list_desks(tx)
            names = {q.id: q.name for q in queues.list_queues(tx)}
        return render_template("pages/desk/choose.html", desks=desks, queue_names=names,
                               staff=current_staff(),
                               remembered=request.cookies.get(DESK_COOKIE))
    return _page(chosen)


@blueprint.post("/desk/choose")
@staff_page()
def desk_choose() -> BaseResponse:
    """Remember the desk this browser works at, then show it."""
    desk_record = _desk(request.form.get("desk_id", ""))
    return _remember(redirect(url_for("pages.desk_page", desk_id=desk_record.id)),
                     desk_record.id)


@blueprint.get("/desk/<desk_id>")
@staff_page()
def desk_page(desk_id: str) -> Any:
    """One desk's working screen (and it becomes this browser's desk)."""
    return _page(_desk(desk_id))


def _page(desk_record: Desk) -> BaseResponse:
    edit_id = request.args.get("edit")
    context = _context(desk_record)
    if edit_id:
        context["edit"] = _editable(edit_id)
    queue_ids = ",".join(desk_record.queue_ids)
    context["config"] = {
        "desk_id": desk_record.id,
        "stream": url_for("api.public_events", queue=queue_ids),
        "waiting": url_for("pages.desk_waiting", desk_id=desk_record.id),
        "current": url_for("pages.desk_current", desk_id=desk_record.id),
        "texts": desk_texts(),
    }
    resp = make_response(render_template("pages/desk/desk.html", **context))
    return _remember(resp, desk_record.id)


@blueprint.get("/desk/<desk_id>/waiting")
@staff_page()
def desk_waiting(desk_id: str) -> Any:
    """The waiting list alone (for htmx), else the whole desk page."""
    desk_record = _desk(desk_id)
    if not is_htmx():
        return redirect(url_for("pages.desk_page", desk_id=desk_id))
    return render_template("pages/desk/_waiting.html", **_context(desk_record))


@blueprint.get("/desk/<desk_id>/current")
@staff_page()
def desk_current(desk_id: str) -> Any:
    """The current patient panel alone (for htmx), else the whole desk page."""
    desk_record = _desk(desk_id)
    if not is_htmx():
        return redirect(url_for("pages.desk_page", desk_id=desk_id))
    return render_template("pages/desk/_current.html", **_context(desk_record))


@blueprint.get("/desk/<desk_id>/tickets/<ticket_id>/edit")
@staff_page()
def desk_edit_form(desk_id: str, ticket_id: str) -> Any:
    """The notes, labels and priority form of one live ticket (htmx: the form alone)."""
    desk_record = _desk(desk_id)
    if not is_htmx():
        return redirect(url_for("pages.desk_page", desk_id=desk_id, edit=ticket_id))
    return render_template("pages/desk/_edit.html", desk=desk_record,
                           edit=_editable(ticket_id), label_text_colour=label_text_colour)


def _editable(ticket_id: str) -> Ticket | None:
    with runtime().store.read() as tx:
        try:
            ticket = tickets.get(tx, ticket_id)
        except NotFound:
            return None
    return None if ticket.terminal else ticket


# -- actions ---------------------------------------------------------------------------

def _answer(desk_record: Desk, notice: str | None = None,
            close_editor: bool = False) -> BaseResponse:
    """After an action: htmx gets the current panel and the list (out of band); a plain
    form post goes back to the page (post/redirect/get)."""
    if not is_htmx():
        return redirect(url_for("pages.desk_page", desk_id=desk_record.id))
    context = _context(desk_record, notice=notice)
    html = (render_template("pages/desk/_current.html", **context)
            + render_template("pages/desk/_waiting.html", oob=True, **context))
    if close_editor:
        html += '<div id="editor" class="editor" hx-swap-oob="true"></div>'

    return make_response(html)


def _refused(err: Exception, ticket_id: str | None = None,
             desk_id: str | None = None) -> ApiError:
    """A refused action in the visitor's language, telling the page to refresh its lists.

    A stale version is explained by what happened to the ticket when that is why:
    another desk called it, or it left the queue.
    """
    headers = {"HX-Trigger": STALE_TRIGGER}
    if isinstance(err, QueueEmpty):
        return ApiError(404, "queue_empty",
                        gettext("No one is waiting in the queues of this desk."), headers=headers)
    if isinstance(err, NotFound):
        return ApiError(404, "not_found", gettext("This ticket no longer exists."),
                        headers=headers)
    now = None
    if ticket_id:
        with runtime().store.read() as tx:
            try:
                now = tickets.get(tx, ticket_id)
            except NotFound:
                now = None
    code = now.code if now else ""
    if now is not None and now.state == CALLED and now.desk_id != desk_id:
        message = gettext("%(code)s was already called by another desk.", code=code)
    elif now is not None and now.terminal:
        message = gettext("%(code)s has already left the queue.", code=code)
    elif isinstance(err, InvalidTransition) and now is not None and now.state == WAITING:
        message = gettext("%(code)s is back in the queue and no longer called.", code=code)
    elif isinstance(err, VersionConflict):
        message = gettext("%(code)s was changed by someone else a moment ago. The list is up "
                          "to date now; try again.", code=code)
    else:
        message = gettext("%(code)s cannot take this action now.", code=code)
    status_code = "version_conflict" if isinstance(err, VersionConflict) else "invalid_transition"
    return ApiError(409, status_code, message, headers=headers)


def _version() -> int | None:
    raw = request.form.get("version", "")
    return int(raw) if raw.isdigit() else None


@blueprint.post("/desk/<desk_id>/call-next")
@staff_page()
def desk_call_next(desk_id: str) -> BaseResponse:
    """Call the next waiting ticket of the desk's queues, in the desk's order."""
    desk_record = _desk(desk_id)
    user = current_staff()
    assert user is not None  # staff_page
    try:
        with runtime().store.write() as tx:
            tickets.call_next(tx, desk_record.id, user_id=user["id"])
    except QueueEmpty as err:
        raise _refused(err) from None
    return _answer(desk_record)


@blueprint.post("/desk/<desk_id>/tickets/<ticket_id>/<action>")
@staff_page()
def desk_action(desk_id: str, ticket_id: str, action: str) -> BaseResponse:
    """One ticket action of the state machine (call, recall, complete, skip, return,
    transfer), run through the registry's function with who acted."""
    if action not in TICKET_ACTIONS:
        raise NotFound(f"No desk action {action}.")
    desk_record = _desk(desk_id)
    entry = tickets.TRANSITIONS[action]
    user = current_staff()
    assert user is not None
    args: dict[str, Any] = {"version": _version()}
    args.update(entry.staff_args)
    settings = runtime().settings
    args.update({param: make(settings) for param, make in entry.settings.items()})
    if entry.records_user:
        args["user_id"] = user["id"]
    positional: list[Any] = []
    if action == "call":
        positional = [desk_record.id]
    elif action == "transfer":
        positional = [request.form.get("queue_id", "")]
        args["to_front"] = request.form.get("to_front") in ("1", "on", "true")
    try:
        with runtime().store.write() as tx:
            entry.fn(tx, ticket_id, *positional, **args)
    except (InvalidTransition, VersionConflict, NotFound) as err:
        if isinstance(err, NotFound) and action == "transfer":
            raise
        raise _refused(err, ticket_id, desk_record.id) from None
    return _answer(desk_record)


@blueprint.post("/desk/<desk_id>/tickets/<ticket_id>/move")
@staff_page()
def desk_move(desk_id: str, ticket_id: str) -> BaseResponse:
    """Move a waiting ticket one up, one down or to the front among its kind (priority
    or not) in its queue, through the domain's ``reorder``."""
    desk_record = _desk(desk_id)
    where = request.form.get("to", "")
    try:
        with runtime().store.write() as tx:
            ticket = tickets.get(tx, ticket_id)
            _, waiting = listing.list_tickets(
                tx, listing.TicketFilter(queue_ids=[ticket.queue_id], states=[WAITING]),
                sort="queue", limit=LIST_LIMIT)
            ids = [t.id for t in waiting]
            at = ids.index(ticket.id) if ticket.id in ids else -1
            after: str | None
            if where == "front" or (where == "up" and at == 1):
                after = None
            elif where == "up" and at > 1:
                after = ids[at - 2]
            elif where == "down" and 0 <= at < len(ids) - 1:
                after = ids[at + 1]
            else:
                return _answer(desk_record)
            tickets.reorder(tx, ticket.id, after=after, version=_version())
    except (InvalidTransition, VersionConflict, NotFound) as err:
        raise _refused(err, ticket_id, desk_record.id) from None
    return _answer(desk_record)


@blueprint.post("/desk/<desk_id>/tickets/<ticket_id>/priority")
@staff_page()
def desk_priority(desk_id: str, ticket_id: str) -> BaseResponse:
    """Turn a live ticket's priority on or off (``priority`` = ``priority``/``normal``)."""
    desk_record = _desk(desk_id)
    wanted = request.form.get("priority", "")
    try:
        with runtime().store.write() as tx:
            tickets.update(tx, ticket_id, version=_version() or 0,
                           priority=tickets.parse_priority(wanted))
    except (InvalidTransition, VersionConflict, NotFound) as err:
        raise _refused(err, ticket_id, desk_record.id) from None
    return _answer(desk_record)


@blueprint.post("/desk/<desk_id>/tickets/<ticket_id>/edit")
@staff_page()
def desk_edit(desk_id: str, ticket_id: str) -> BaseResponse:
    """Save notes and labels of a live ticket (like ``PATCH /tickets/{id}``, with its
    version): label rows ``label_value``/``label_colour``/``label_public``, blank ones
    dropped."""
    desk_record = _desk(desk_id)
    values = request.form.getlist("label_value")
    colours = request.form.getlist("label_colour")
    public = set(request.form.getlist("label_public"))
    labels = []
    for i, value in enumerate(values):
        if not value.strip():
            continue
        labels.append({"value": value, "color": colours[i] if i < len(colours) else None,
                       "public": str(i) in public})
    try:
        with runtime().store.write() as tx:
            tickets.update(tx, ticket_id, version=_version() or 0,
                           notes=request.form.get("notes", ""), labels=labels)
    except (InvalidTransition, VersionConflict, NotFound) as err:
        raise _refused(err, ticket_id, desk_record.id) from None
    return _answer(desk_record, notice=gettext("Saved."), close_editor=True)
