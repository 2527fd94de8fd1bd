"""One error path for the whole app, the API and the pages alike.

Every exception a view lets out, whatever its class, goes through
``handle_exception``: it is first described as a ``Failure`` (status, stable
``code``, a message for people, field errors, headers), then shown

- under ``/api/`` as RFC 9457 problem details served as
  ``application/problem+json``: ``{"type", "title", "status", "code",
  "message", "detail", "errors"?}``;
- to an htmx request (``HX-Request: true``) as a small HTML banner fragment
  carrying the status and the message, for the page to show;
- elsewhere as a friendly HTML page.

Never a traceback: an unexpected exception is logged and answered as a 500
that says nothing of its internals. Domain errors map to a status in one table
here (``STATUS_BY_CODE``); bad input is always the domain ``ValidationError``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, current_app, json, render_template, request
from flask.typing import ResponseReturnValue
from markupsafe import escape
from werkzeug.exceptions import HTTPException

from ..domain import errors as de

log = logging.getLogger("jonot_local.api")

STATUS_BY_CODE: dict[str, int] = {
    "validation_error": 422,
    "not_found": 404,
    "queue_empty": 404,
    "queue_closed": 409,
    "invalid_transition": 409,
    "version_conflict": 409,
    "conflict": 409,
    "unauthorized": 401,
    "forbidden": 403,
    "rate_limited": 429,
    "streams_full": 503,
}

_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict",
    413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_error",
    429: "rate_limited", 500: "internal_error", 503: "unavailable",
}

_INTERNAL_MESSAGE = ("The server hit an unexpected error; nothing was changed. "
                     "Try again, and report it if it persists.")

_PAGE_TEXT = {
    404: ("This page does not exist",
          "Check the address. The server itself is running."),
    405: ("This cannot be done here", "Go back and try again from the page you came from."),
    500: ("Something went wrong",
          "Nothing was changed. Try again in a moment; if it keeps happening, "
          "tell the office's IT person."),
}

_PAGE_TITLES = {
    400: "This request was not understood", 401: "Please sign in", 403: "Not allowed",
    404: "Not found", 409: "This cannot be done now", 413: "Too large",
    422: "Please check what you entered", 429: "Too many tries",
    503: "Busy right now",
}


_RESERVED = frozenset({"type", "title", "status", "code", "message", "detail", "errors",
                       "headers", "retry_after"})


def error_codes() -> dict[str, int]:
    """Every stable ``code`` an API error can carry, with its HTTP status, by status."""
    codes = {**{code: status for status, code in _HTTP_CODES.items()}, **STATUS_BY_CODE}
    return dict(sorted(codes.items(), key=lambda item: (item[1], item[0])))


class ApiError(Exception):
    """An HTTP-level refusal raised by the adapters (auth, malformed body, limits).

    Bad input is not an ``ApiError``: raise the domain ``ValidationError`` (422
    ``validation_error``), so there is one validation-error type.
    """

    def __init__(self, status: int, code: str, message: str,
                 errors: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        if status == 422 or code == "validation_error":
            raise TypeError("raise jonot_local.domain.errors.ValidationError for bad input")
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.errors = errors
        self.headers = headers or {}


@dataclass
class Failure:
    """What went wrong, before it is shown as problem JSON, a page or a banner."""

    status: int
    code: str
    message: str
    errors: list[dict[str, str]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    #: the message may be shown to people (false for crashes: it says nothing then)
    public: bool = True
    #: (title, message) for pages when they differ from the API's wording
    page: tuple[str, str] | None = None


def describe(err: BaseException) -> Failure:
    """The ``Failure`` for any exception; unexpected ones are logged with their traceback."""
    if isinstance(err, de.DomainError):
        return _domain_failure(err)
    if isinstance(err, ApiError):
        return Failure(err.status, err.code, err.message, err.errors, dict(err.headers))
    if isinstance(err, HTTPException):
        return _http_failure(err)
    log.error("unexpected error on %s %s", request.method, request.path, exc_info=err)
    return Failure(500, "internal_error", _INTERNAL_MESSAGE, public=False)


def _domain_failure(err: de.DomainError) -> Failure:
    status = STATUS_BY_CODE.get(err.code, 400)
    errors = None
    if isinstance(err, de.ValidationError):
        errors = list(err.errors)
    extra = {k: v for k, v in err.details.items()
             if isinstance(v, str | int | float | bool) and k not in _RESERVED}
    headers = {}
    retry_after = err.details.get("retry_after")
    if isinstance(retry_after, int | float) and not isinstance(retry_after, bool):
        headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))
    return Failure(status, err.code, err.message, errors, headers, extra)


def _http_failure(err: HTTPException) -> Failure:
    status = err.code or 500
    code = _HTTP_CODES.get(status, "http_error")
    message = {
        404: "There is nothing at this address. Check the path against /api/v1/openapi.json.",
        405: f"{request.method} is not allowed here.",
        413: "The request body is too large.",
    }.get(status, err.description or code)
    # Allow (405), Retry-After (429, 503), WWW-Authenticate (401) as werkzeug sets them
    headers = {k: v for k, v in err.get_headers() if k.lower() != "content-type"}
    page = None
    if err.description != type(err).description and status < 500:
        page = (_PAGE_TITLES.get(status, "This did not work"), str(err.description))
    elif status in _PAGE_TEXT:
        page = _PAGE_TEXT[status]
    return Failure(status, code, message, headers=headers, public=status < 500, page=page)


# -- how a failure is shown ---------------------------------------------------------------

def problem(status: int, code: str, message: str, *,
            errors: list[dict[str, str]] | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """Build a problem+json response."""
    body: dict[str, Any] = {
        "type": f"https://jonot.local/problems/{code}",
        "title": code.replace("_", " ").capitalize(),
        "status": status,
        "code": code,
        "message": message,
        "detail": message,
    }
    if errors is not None:
        body["errors"] = errors
    body.update({k: v for k, v in extra.items() if v is not None and k not in body})
    resp = Response(json.dumps(body), status=status, mimetype="application/problem+json")
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    if status == 401 and "WWW-Authenticate" not in resp.headers:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="jonot"'
    return resp


def is_api_request() -> bool:
    """Whether the request is for the JSON API (answered with problem JSON)."""
    return request.path.startswith("/api/")


def is_htmx_request() -> bool:
    """Whether htmx sent the request (``HX-Request: true``): it wants a fragment."""
    return request.headers.get("HX-Request", "").lower() == "true"


def page_text(failure: Failure) -> tuple[str, str]:
    """(title, message) for people: the failure's own message when it may be shown."""
    if not failure.public:
        return _PAGE_TEXT[500]
    if failure.page is not None:
        return failure.page
    return _PAGE_TITLES.get(failure.status, "This did not work"), failure.message


def available_pages(app: Flask) -> list[tuple[str, str]]:
    """(label, path) of the people-facing pages this server has, in a fixed order."""
    adapter = app.url_map.bind("localhost")
    pages = []
    for label, path in (("Kiosk", "/kiosk"), ("Display", "/display"), ("Desk", "/desk"),
                        ("Admin", "/admin")):
        try:
            adapter.match(path, method="GET")
        except HTTPException:
            continue
        pages.append((label, path))
    return pages


def _page(failure: Failure) -> Response:
    """A friendly HTML error page for a browser (never a traceback)."""
    title, message = page_text(failure)
    errors = failure.errors or []
    try:
        html = render_template("error.html", status=failure.status, title=title,
                               message=message, errors=errors,
                               pages=available_pages(current_app))
    except Exception:  # the error page itself must not fail
        log.exception("rendering the error page failed")
        html = (f"<!doctype html><title>{escape(title)}</title><h1>{escape(title)}</h1>"
                f"<p>{escape(message)}</p>")
    return _html(html, failure)


def _fragment(failure: Failure) -> Response:
    """A small banner for htmx to show (htmx does not swap 4xx/5xx bodies by itself)."""
    title, message = page_text(failure)
    try:
        html = render_template("_error_banner.html", status=failure.status, code=failure.code,
                               title=title, message=message, errors=failure.errors or [])
    except Exception:
        log.exception("rendering the error banner failed")
        html = (f'<div class="error-banner" role="alert" data-status="{failure.status}">'
                f"<strong>{failure.status} {escape(title)}</strong> {escape(message)}</div>")
    return _html(html, failure)


def _html(html: str, failure: Failure) -> Response:
    resp = Response(html, status=failure.status, mimetype="text/html")
    for key, value in failure.headers.items():
        resp.headers[key] = value
    return resp


def handle_exception(err: Exception) -> ResponseReturnValue:
    """The app's one exception hook: problem JSON, an htmx banner or a page."""
    if isinstance(err, HTTPException) and err.response is not None:
        return err.response  # abort(response): the view chose its answer
    failure = describe(err)
    if is_api_request():
        return problem(failure.status, failure.code, failure.message, errors=failure.errors,
                       headers=failure.headers, **failure.extra)
    if is_htmx_request():
        return _fragment(failure)
    return _page(failure)


def register(app: Flask) -> None:
    """Install ``handle_exception`` for every exception class."""
    app.register_error_handler(Exception, handle_exception)
