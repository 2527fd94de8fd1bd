"""The TV display: ``/display`` (every queue) and ``/display/<id>`` (a display's queues).

The first paint is server-rendered from ``display_state`` — the very payload the
public stream's ``state`` event carries — and the page's script then follows
``GET /api/v1/events?display=<id>`` and renders the same JSON, so both speak
from one source. ``HX-Request: true`` gets the board fragment alone.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from babel.dates import format_time
from flask import Response, abort, g, render_template, request, url_for
from flask_babel import force_locale, get_locale, gettext, ngettext

from .. import i18n
from ..api.clients import client_address
from ..api.errors import problem
from ..domain.display import display_scope, display_state, find_display, latest_call
from ..domain.errors import NotFound
from ..domain.location import get_location
from ..runtime import runtime
from ..speech import SpeechBusy, SpeechFailed, SpeechUnavailable, ssml
from . import blueprint
from .assets import asset_url
from .common import is_htmx

RECENT_SHOWN = 5     # earlier calls listed beside the newest
DWELL_MS = 7000      # the newest call stays large at least this long
CODE_RE = re.compile(r"^[A-Z]{1,3}[0-9]{1,9}(-[0-9]{1,3})?$")
CODE_SLOT = "\x00"  # where the code goes in the spoken phrase (never in a desk's name)
SPEECH_CODE = "__CODE__"  # the page's URL template of server-made announcements


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
    with rt.store.read() as tx:
        record = None
        if display_id:
            try:
                record = find_display(tx, display_id)
            except NotFound:
                abort(404)
        state = display_state(tx, record, display_scope(record), rt.settings.default_service_s)
        clinic = get_location(tx)["name"]
    # the display's own language, else the server's display language, else the browser's
    language = (record or {}).get("language") or rt.settings.display_language
    if language:
        g.page_language = language
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
            # audio made by the server, for a browser without a voice for ``lang``
            "speech": (url_for("pages.display_speech", code=SPEECH_CODE, lang=str(get_locale()))
                       if rt.speech is not None and rt.speech.available else None),
            "dwell_ms": DWELL_MS,
            "recent": RECENT_SHOWN,
            "texts": display_texts(),
            "state": state,
        },
    }
    if is_htmx():
        return render_template("display/_board.html", **context)
    return render_template("display/display.html", **context)


@blueprint.get("/display/speech/<code>.wav")
def display_speech(code: str) -> Response:
    """A call read out by the server (espeak-ng) as WAV: ``/display/speech/A042.wav?lang=fi``.

    For displays whose browser has no voice for their language. The server
    decides the words: the code of a ticket called in the last 30 minutes and
    its desk ("A 42, Room 3"), in ``lang`` (one of the pages' languages; else the
    server's display language). Each client address has a budget
    (``JONOT_SPEECH_PER_MIN``). Problem JSON: 404 (no such recent call), 429, 503
    (espeak-ng not installed, or busy).
    """
    rt = runtime()
    wait = rt.speech_budget.take(client_address()) if rt.speech_budget is not None else 0
    if wait:
        return problem(429, "rate_limited", "Too many announcements asked for from this "
                       f"address; try again in {wait} s.", headers={"Retry-After": str(wait)})
    if not CODE_RE.match(code):
        return problem(404, "not_found", f"{code} is not a ticket code.")
    with rt.store.read() as tx:
        call = latest_call(tx, code)
    if call is None:
        return problem(404, "not_found", f"{code} has not been called in the last 30 minutes: "
                       "there is nothing to announce.")
    language = (i18n.known_language(request.args.get("lang"))
                or i18n.known_language(rt.settings.display_language)
                or i18n.known_language(rt.settings.language) or i18n.SOURCE_LANGUAGE)
    with force_locale(language):
        phrase = (gettext("%(code)s, %(desk)s", code=CODE_SLOT, desk=call["desk_name"])
                  if call["desk_name"] else gettext("Number %(code)s", code=CODE_SLOT))
    speech = rt.speech
    try:
        if speech is None:
            raise SpeechUnavailable("no speech service")
        audio = speech.wav(ssml(code, phrase, CODE_SLOT), language)
    except SpeechUnavailable:
        return problem(503, "speech_unavailable",
                       "This server cannot speak: espeak-ng is not installed. Install it on "
                       "the office server (Linux: apt-get install espeak-ng; Windows: the "
                       "espeak-ng .msi installer), or use a display browser with a voice "
                       f"for {language}.")
    except SpeechBusy:
        return problem(503, "speech_busy", "The server is making other announcements; "
                       "try again in a moment.", headers={"Retry-After": "2"})
    except SpeechFailed as exc:
        return problem(503, "speech_failed", f"espeak-ng made no audio ({exc}).")
    resp = Response(audio, mimetype="audio/wav")
    resp.headers["Cache-Control"] = "private, max-age=600"
    return resp
