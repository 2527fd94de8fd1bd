"""The TV display: ``/display`` (every queue) and ``/display/<id>`` (a display's queues).

The first paint is server-rendered from ``display_state`` — the very payload the
public stream's ``state`` event carries — and the page's script then follows
``GET /api/v1/events?display=<id>`` and renders the same JSON, so both speak
from one source. ``HX-Request: true`` gets the board fragment alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from babel.dates import format_time
from flask import abort, g, render_template, url_for
from flask_babel import get_locale, gettext, ngettext

from ..domain import queues
from ..domain.display import display_scope, display_state
from ..domain.errors import NotFound
from ..domain.location import get_location
from ..runtime import runtime
from . import blueprint
from .assets import asset_url
from .common import is_htmx

RECENT_SHOWN = 5     # earlier calls listed beside the newest
DWELL_MS = 7000      # the newest call stays large at least this long


def display_texts() -> dict[str, Any]:
    """Every string the display's script shows or speaks, in the request's language."""
    return {
        "waiting_one": ngettext("%(n)s waiting", "%(n)s waiting", 1, n="{n}"),
        "waiting_other": ngettext("%(n)s waiting", "%(n)s waiting", 2, n="{n}"),
        "closed": gettext("Closed"),
        "no_calls": gettext("No one has been called yet"),
        "reconnecting": gettext("Reconnecting…"),
        # The spoken announcement: the code read as letters and a number ("A 42"), then where.
        "say": gettext("%(code)s, %(desk)s", code="{code}", desk="{desk}"),
        "say_no_desk": gettext("Number %(code)s", code="{code}"),
    }


@blueprint.get("/display", defaults={"display_id": None})
@blueprint.get("/display/<display_id>")
def display(display_id: str | None) -> Any:
    """The waiting room's screen: the newest call large, recent calls, waiting counts."""
    rt = runtime()
    if rt.settings.display_language:
        g.page_language = rt.settings.display_language
    with rt.store.read() as tx:
        record = None
        if display_id:
            try:
                record = queues.get_display(tx, display_id)
            except NotFound:
                abort(404)
        state = display_state(tx, record, display_scope(record), rt.settings.default_service_s)
        clinic = get_location(tx)["name"]
    stream = url_for("api.public_events", display=display_id) if display_id else url_for(
        "api.public_events")
    context = {
        "clinic": clinic,
        "clock": format_time(datetime.now().astimezone(), "short", locale=get_locale()),
        "state": state,
        "newest": state["recent_calls"][0] if state["recent_calls"] else None,
        "earlier": state["recent_calls"][1:1 + RECENT_SHOWN],
        "queue_names": {q["id"]: q["name"] for q in state["queues"]},
        "config": {
            "stream": stream,
            "lang": str(get_locale()),
            "chime": asset_url("display_assets.static", "chime.wav"),
            "dwell_ms": DWELL_MS,
            "recent": RECENT_SHOWN,
            "texts": display_texts(),
            "state": state,
        },
    }
    if is_htmx():
        return render_template("display/_board.html", **context)
    return render_template("display/display.html", **context)
