"""Admin: queues (kiosk order, open/closed), desks (their queues in priority order), displays.

Every change goes through the domain functions the API's queue, desk and display
endpoints call (``domain/queues.py``), in one write transaction each.
"""

from __future__ import annotations

from typing import Any

from flask import redirect, request, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response as BaseResponse

from ...domain import queues, status
from ...domain.errors import DomainError, NotFound
from ...i18n import available_languages
from ...runtime import runtime
from .. import blueprint
from ..common import is_htmx
from ..session import staff_page
from .common import after_post, checked, refused, render

# -- queues ----------------------------------------------------------------------------


def _queues_context() -> dict[str, Any]:
    rt = runtime()
    with rt.store.read() as tx:
        rows = [status.queue_summary(tx, q, rt.settings.default_service_s)
                for q in queues.list_queues(tx)]
    return {"queues": rows}


def _queues(notice: str | None = None) -> BaseResponse:
    if request.method == "POST" and not is_htmx():
        return after_post(notice, "pages.admin_queues")
    return render("queues", {**_queues_context(), "notice": notice})


@blueprint.get("/admin")
@staff_page("admin")
def admin() -> BaseResponse:
    """The admin's first page: the queues."""
    return redirect(url_for("pages.admin_queues"))


@blueprint.get("/admin/queues")
@staff_page("admin")
def admin_queues() -> BaseResponse:
    """Every queue in kiosk order: add one, rename, prefix, colour, open/close, order."""
    return _queues()


@blueprint.post("/admin/queues")
@staff_page("admin")
def admin_queue_create() -> BaseResponse:
    """Add a queue (``queues.create_queue``, as ``POST /api/v1/queues``)."""
    form = request.form
    try:
        with runtime().store.write() as tx:
            queue = queues.create_queue(tx, name=form.get("name", ""),
                                        prefix=form.get("prefix", ""),
                                        colour=form.get("colour") or None,
                                        is_open=checked("open"))
    except DomainError as err:
        return refused("queues", _queues_context(), err, "new-queue")
    return _queues(gettext("Queue %(name)s added.", name=queue.name))


@blueprint.post("/admin/queues/<queue_id>")
@staff_page("admin")
def admin_queue_edit(queue_id: str) -> BaseResponse:
    """Rename a queue, change its prefix or colour (``queues.update_queue``)."""
    form = request.form
    try:
        with runtime().store.write() as tx:
            queue = queues.update_queue(tx, queue_id, name=form.get("name", ""),
                                        prefix=form.get("prefix", ""),
                                        colour=form.get("colour", ""))
    except DomainError as err:
        return refused("queues", _queues_context(), err, f"queue-{queue_id}")
    return _queues(gettext("Queue %(name)s saved.", name=queue.name))


@blueprint.post("/admin/queues/<queue_id>/open")
@staff_page("admin")
def admin_queue_open(queue_id: str) -> BaseResponse:
    """Open (``open=1``) or close (``open=0``) a queue to new tickets."""
    wanted = request.form.get("open") == "1"
    try:
        with runtime().store.write() as tx:
            queue = queues.update_queue(tx, queue_id, is_open=wanted)
    except DomainError as err:
        return refused("queues", _queues_context(), err, f"queue-{queue_id}")
    text = (gettext("%(name)s is open: the kiosks offer it again.", name=queue.name) if wanted
            else gettext("%(name)s is closed: the kiosks show it closed.", name=queue.name))
    return _queues(text)


@blueprint.post("/admin/queues/<queue_id>/move")
@staff_page("admin")
def admin_queue_move(queue_id: str) -> BaseResponse:
    """Move a queue one place up or down (``to``) in the kiosk order."""
    step = {"up": -1, "down": 1}.get(request.form.get("to", ""), 0)
    try:
        with runtime().store.write() as tx:
            order = queues.list_queues(tx)
            ids = [q.id for q in order]
            if queue_id not in ids:
                raise NotFound(f"No queue with id {queue_id}.")
            at = ids.index(queue_id)
            to = at + step
            if step and 0 <= to < len(ids):
                ids[at], ids[to] = ids[to], ids[at]
            by_id = {q.id: q for q in order}
            for rank, qid in enumerate(ids, start=1):
                if by_id[qid].sort_order != rank:
                    queues.update_queue(tx, qid, sort_order=rank)
    except DomainError as err:
        return refused("queues", _queues_context(), err, f"queue-{queue_id}")
    return _queues()


# -- desks -------------------------------------------------------------------------------

def _desks_context() -> dict[str, Any]:
    with runtime().store.read() as tx:
        return {"desks": queues.list_desks(tx), "queues": queues.list_queues(tx)}


def _desks(notice: str | None = None) -> BaseResponse:
    if request.method == "POST" and not is_htmx():
        return after_post(notice, "pages.admin_desks")
    return render("desks", {**_desks_context(), "notice": notice})


@blueprint.get("/admin/desks")
@staff_page("admin")
def admin_desks() -> BaseResponse:
    """Every desk with the queues it serves, in priority order."""
    return _desks()


@blueprint.post("/admin/desks")
@staff_page("admin")
def admin_desk_create() -> BaseResponse:
    """Add a desk serving the ticked queues (kiosk order first; reorder after)."""
    form = request.form
    try:
        with runtime().store.write() as tx:
            desk = queues.create_desk(tx, name=form.get("name", ""),
                                      queue_ids=form.getlist("queue_ids"),
                                      pick_mode=form.get("pick_mode", "queue_order"))
    except DomainError as err:
        return refused("desks", _desks_context(), err, "new-desk")
    return _desks(gettext("Desk %(name)s added.", name=desk.name))


@blueprint.post("/admin/desks/<desk_id>")
@staff_page("admin")
def admin_desk_edit(desk_id: str) -> BaseResponse:
    """Rename a desk or change how it picks the next patient (``queues.update_desk``)."""
    form = request.form
    try:
        with runtime().store.write() as tx:
            desk = queues.update_desk(tx, desk_id, name=form.get("name", ""),
                                      pick_mode=form.get("pick_mode", "queue_order"))
    except DomainError as err:
        return refused("desks", _desks_context(), err, f"desk-{desk_id}")
    return _desks(gettext("Desk %(name)s saved.", name=desk.name))


@blueprint.post("/admin/desks/<desk_id>/queues")
@staff_page("admin")
def admin_desk_queues(desk_id: str) -> BaseResponse:
    """Change a desk's queues: ``do`` = ``add``, ``remove``, ``up`` or ``down`` with
    ``queue_id``; saved through ``queues.update_desk`` in that priority order."""
    do, queue_id = request.form.get("do", ""), request.form.get("queue_id", "")
    try:
        with runtime().store.write() as tx:
            desk = queues.get_desk(tx, desk_id)
            ids = list(desk.queue_ids)
            if do == "add" and queue_id and queue_id not in ids:
                ids.append(queue_id)
            elif do == "remove" and queue_id in ids:
                ids.remove(queue_id)
            elif do in ("up", "down") and queue_id in ids:
                at = ids.index(queue_id)
                to = at - 1 if do == "up" else at + 1
                if 0 <= to < len(ids):
                    ids[at], ids[to] = ids[to], ids[at]
            if ids != desk.queue_ids:
                desk = queues.update_desk(tx, desk_id, queue_ids=ids)
    except DomainError as err:
        return refused("desks", _desks_context(), err, f"desk-{desk_id}")
    return _desks(gettext("Desk %(name)s saved.", name=desk.name))


# -- displays ----------------------------------------------------------------------------

def _displays_context() -> dict[str, Any]:
    with runtime().store.read() as tx:
        return {"displays": queues.list_displays(tx), "queues": queues.list_queues(tx),
                "languages": available_languages()}


def _displays(notice: str | None = None) -> BaseResponse:
    if request.method == "POST" and not is_htmx():
        return after_post(notice, "pages.admin_displays")
    return render("displays", {**_displays_context(), "notice": notice})


@blueprint.get("/admin/displays")
@staff_page("admin")
def admin_displays() -> BaseResponse:
    """Every display (a TV's board) and the queues it shows."""
    return _displays()


@blueprint.post("/admin/displays")
@staff_page("admin")
def admin_display_create() -> BaseResponse:
    """Add a display showing the ticked queues (none ticked: every queue)."""
    form = request.form
    try:
        with runtime().store.write() as tx:
            display = queues.create_display(tx, name=form.get("name", ""),
                                            queue_ids=form.getlist("queue_ids"),
                                            language=form.get("language") or None)
    except DomainError as err:
        return refused("displays", _displays_context(), err, "new-display")
    return _displays(gettext("Display %(name)s added.", name=display["name"]))


@blueprint.post("/admin/displays/<display_id>")
@staff_page("admin")
def admin_display_edit(display_id: str) -> BaseResponse:
    """Rename a display or change its queues (``queues.update_display``)."""
    form = request.form
    try:
        with runtime().store.write() as tx:
            display = queues.update_display(tx, display_id, name=form.get("name", ""),
                                            queue_ids=form.getlist("queue_ids"),
                                            language=form.get("language") or None)
    except DomainError as err:
        return refused("displays", _displays_context(), err, f"display-{display_id}")
    return _displays(gettext("Display %(name)s saved.", name=display["name"]))
