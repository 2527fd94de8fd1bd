"""What the admin pages share: rendering a section (page or fragment) and refusals in words.

Each section (queues, desks, displays, devices, staff, settings, system) is one
template: ``admin/page.html`` (the page, with the nav) includes ``admin/_<name>.html``
(the part inside ``#section``), which an htmx request gets alone. A form that
the domain refuses comes back with status 422/409/404, the ``X-Admin-Form``
header (``admin.js`` then swaps it, htmx would not by itself), what was typed
still in it, the message beside the field and in the banner.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from babel.dates import format_datetime
from flask import (
    current_app,
    flash,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import get_locale, gettext
from werkzeug.wrappers import Response as BaseResponse

from ...api.errors import describe
from ...domain.errors import DomainError
from ...timeutil import parse_iso
from .. import blueprint
from ..common import is_htmx
from ..session import current_staff

FORM_HEADER = "X-Admin-Form"
SECTIONS = ("queues", "desks", "displays", "devices", "staff", "settings", "system")


def section_titles() -> dict[str, str]:
    """The nav's labels, in the request's language."""
    return {"queues": gettext("Queues"), "desks": gettext("Desks"),
            "displays": gettext("Displays"), "devices": gettext("Devices"),
            "staff": gettext("Staff"), "settings": gettext("Settings"),
            "system": gettext("Equipment and system")}


def field_labels() -> dict[str, str]:
    """How a field the domain names is called on the forms."""
    return {
        "name": gettext("Name"), "prefix": gettext("Prefix"), "colour": gettext("Colour"),
        "open": gettext("Open"), "sort_order": gettext("Kiosk order"),
        "queue_ids": gettext("Queues"), "pick_mode": gettext("Next patient from"),
        "kind": gettext("Kind"), "display_id": gettext("Display"),
        "printer": gettext("Printer"), "priority_button": gettext("Priority button"),
        "language": gettext("Language"), "printing": gettext("Printing"),
        "return_s": gettext("Back to start after"), "username": gettext("Username"),
        "password": gettext("Password"), "display_name": gettext("Full name"),
        "role": gettext("Role"), "active": gettext("Active"),
        "default_service_s": gettext("Typical service time"),
        "kiosk_return_s": gettext("Kiosk back to start after"), "device": gettext("Device"),
        "clinic": gettext("Clinic name"), "service_min": gettext("Typical service time"),
    }


def form_field(domain_field: str) -> str:
    """The form input a domain field name stands for (``options.return_s`` → ``return_s``,
    ``queue_ids[2]`` → ``queue_ids``)."""
    name = domain_field.rsplit(".", 1)[-1]
    return re.sub(r"\[\d+\]$", "", name)


# The domain's words for a field problem, in the page's language.
_FIELD_WORDS: list[tuple[str, Callable[[re.Match[str]], str]]] = [
    (r"is required", lambda m: gettext("is required")),
    (r"must be at most (\d+) characters",
     lambda m: gettext("must be at most %(n)s characters", n=m[1])),
    (r"must be at least (\d+) characters",
     lambda m: gettext("must be at least %(n)s characters", n=m[1])),
    (r"must be 1 to 3 letters A-Z", lambda m: gettext("must be 1 to 3 letters A–Z")),
    (r"must be a colour like (#[0-9a-f]{6})",
     lambda m: gettext("must be a colour like %(c)s", c=m[1])),
    (r"must be 1 to 64 letters, digits or \. _ @ -",
     lambda m: gettext("must be 1 to 64 letters, digits or . _ @ -")),
    (r"must be (?:an integer )?between (\S+) and (\S+)",
     lambda m: gettext("must be a number from %(a)s to %(b)s", a=m[1], b=m[2])),
    (r"must be a (?:whole )?number", lambda m: gettext("must be a number")),
    (r"must name at least one queue", lambda m: gettext("must include at least one queue")),
    (r"must not repeat a queue", lambda m: gettext("must not repeat a queue")),
    (r"must not contain control characters",
     lambda m: gettext("must not contain control characters")),
    (r"must be one of (.+)", lambda m: gettext("must be one of %(v)s", v=m[1])),
    (r"must be staff or admin", lambda m: gettext("must be staff or admin")),
    (r"no (?:queue|display) with id .*", lambda m: gettext("no longer exists; reload the page")),
    (r"only a kiosk prints receipts", lambda m: gettext("only a kiosk prints receipts")),
    (r"is revoked; register a new device instead",
     lambda m: gettext("is revoked; register a new device instead")),
    (r".*(?:printer URI|tcp://HOST).*",
     lambda m: gettext("is not a printer address: write tcp://HOST:PORT "
                       "(e.g. tcp://192.0.2.10:9100) or usb://VID:PID")),
    (r"no printer is set.*", lambda m: gettext("no printer is set up yet")),
]

# Whole refusals (conflicts) the domain explains in a sentence.
_SENTENCES: list[tuple[str, Callable[[re.Match[str]], str]]] = [
    (r"Prefix (\w+) is already used by the queue (.+); pick another prefix\.",
     lambda m: gettext("Prefix %(p)s is already used by the queue %(q)s; pick another "
                       "prefix.", p=m[1], q=m[2])),
    (r"Prefix (\w+) is still on (\d+) waiting or called tickets? of (.+); pick another "
     r"prefix or wait until they are served\.",
     lambda m: gettext("Prefix %(p)s is still on %(n)s waiting or called tickets of %(q)s; "
                       "pick another prefix or wait until they are served.",
                       p=m[1], n=m[2], q=m[3])),
    (r"A desk called '(.+)' already exists\.",
     lambda m: gettext("A desk called %(n)s already exists.", n=m[1])),
    (r"User '(.+)' already exists\.",
     lambda m: gettext("The username %(u)s is already taken.", u=m[1])),
    (r"This is the only active admin account.*",
     lambda m: gettext("This is the only active admin account; make another account an "
                       "admin first.")),
    (r"No \w+ with id .*", lambda m: gettext("This no longer exists. Reload the page.")),
]


def _words(text: str, table: list[tuple[str, Callable[[re.Match[str]], str]]]) -> str | None:
    for pattern, say in table:
        found = re.fullmatch(pattern, text.strip(), re.S)
        if found:
            return say(found)
    return None


def explain(err: DomainError) -> tuple[str, dict[str, str]]:
    """(the banner's sentence, {form input: message}) for a refusal, in the page's language.

    The domain's own message is the fallback, so nothing is ever left unsaid.
    """
    labels = field_labels()
    fields: dict[str, str] = {}
    for item in getattr(err, "errors", None) or []:
        name = form_field(item["field"])
        fields.setdefault(name, _words(item["message"], _FIELD_WORDS) or item["message"])
    sentence = _words(err.message, _SENTENCES)
    if sentence is None and fields:
        sentence = "; ".join(f"{labels.get(k, k)}: {v}" for k, v in fields.items())
    if sentence is None:
        sentence = describe(err).message
    field = err.details.get("field")
    if isinstance(field, str) and form_field(field) not in fields:
        fields[form_field(field)] = sentence
    return sentence, fields


def render(section: str, context: dict[str, Any], status: int = 200,
           headers: dict[str, str] | None = None) -> BaseResponse:
    """The section as a page, or (htmx) the part inside ``#section`` alone."""
    context = {"section": section, "sections": SECTIONS, "titles": section_titles(),
               "staff": current_staff(),
               "htmx": is_htmx(), "reports_url": reports_url(), "errors": {},
               "values": {}, "open_form": None, "notice": None, "banner": None, **context}
    if not is_htmx():
        from ...domain.location import get_location
        from ...runtime import runtime

        with runtime().store.read() as tx:
            context.setdefault("clinic_name", get_location(tx)["name"])
    if context["notice"] is None and not is_htmx():
        flashed = get_flashed_messages()
        context["notice"] = flashed[0] if flashed else None
    name = f"pages/admin/_{section}.html" if is_htmx() else "pages/admin/page.html"
    resp = current_app.make_response((render_template(name, **context), status))
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def refused(section: str, context: dict[str, Any], err: DomainError, form: str) -> BaseResponse:
    """The section again after the domain refused ``form``: typed values kept, the
    message beside each field and in the banner; the API's status code."""
    sentence, fields = explain(err)
    status = describe(err).status
    context = {**context, "errors": {form: fields, "_form": form}, "values": {form: request.form},
               "open_form": form, "banner": sentence}
    return render(section, context, status, {FORM_HEADER: form})


def after_post(notice: str | None, endpoint: str, **values: Any) -> BaseResponse:
    """A plain (no-htmx) form post that worked: back to the page, the notice kept for it."""
    if notice:
        flash(notice)
    return redirect(url_for(endpoint, **values))


def reports_url() -> str:
    """Where the nav's "Reports" goes (the reports pages once they are installed)."""
    if "pages.admin_reports" in current_app.view_functions:
        return url_for("pages.admin_reports")
    return "/admin/reports"


@blueprint.app_template_filter("admin_time")
def admin_time(value: str | None) -> str:
    """A stored UTC time as people read it here: the server's local date and time."""
    if not value:
        return ""
    return format_datetime(parse_iso(value).astimezone(), "short", locale=get_locale())


def checked(name: str) -> bool:
    """Whether a checkbox of the posted form was ticked."""
    return request.form.get(name) in ("1", "on", "true", "yes")
