"""One error shape for the whole API: RFC 9457 problem details with a stable ``code``.

``{"type", "title", "status", "code", "message", "detail", "errors"?}`` served as
``application/problem+json``. Domain errors map to a status in one table here.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, json, render_template, request
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


class ApiError(Exception):
    """An HTTP-level refusal raised by the adapters (auth, malformed body, limits)."""

    def __init__(self, status: int, code: str, message: str,
                 errors: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.errors = errors
        self.headers = headers or {}


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


def from_domain(err: de.DomainError) -> Response:
    """Map a domain error to its problem response."""
    status = STATUS_BY_CODE.get(err.code, 400)
    errors = err.errors if isinstance(err, de.ValidationError) else None
    if isinstance(err, de.ValidationError) and not errors:
        errors = []
    extra = {k: v for k, v in err.details.items()
             if isinstance(v, str | int | float | bool) and k not in _RESERVED}
    return problem(status, err.code, err.message, errors=errors, **extra)


_RESERVED = frozenset({"type", "title", "status", "code", "message", "detail", "errors",
                       "headers"})


def _is_api_request() -> bool:
    return request.path.startswith("/api/")


_PAGE_TEXT = {
    404: ("This page does not exist",
          "Check the address. The server itself is running."),
    405: ("This cannot be done here", "Go back and try again from the page you came from."),
    500: ("Something went wrong",
          "Nothing was changed. Try again in a moment; if it keeps happening, "
          "tell the office's IT person."),
}


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


def _page(status: int) -> Response:
    """A friendly HTML error page for a browser (never a traceback)."""
    title, message = _PAGE_TEXT.get(status, ("This did not work", _PAGE_TEXT[500][1]))
    try:
        html = render_template("error.html", status=status, title=title, message=message,
                               pages=available_pages(current_app))
    except Exception:  # the error page itself must not fail
        log.exception("rendering the error page failed")
        html = f"<!doctype html><title>{title}</title><h1>{title}</h1><p>{message}</p>"
    return Response(html, status=status, mimetype="text/html")


def register(app: Flask) -> None:
    """Install the handlers: API paths always get problem JSON, never HTML or a traceback."""

    @app.errorhandler(de.DomainError)
    def _domain(err: de.DomainError) -> Response:
        return from_domain(err)

    @app.errorhandler(ApiError)
    def _api(err: ApiError) -> Response:
        return problem(err.status, err.code, err.message, errors=err.errors, headers=err.headers)

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException) -> Any:
        if not _is_api_request():
            return _page(err.code or 500)
        status = err.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        message = {
            404: "There is nothing at this address. Check the path against /api/v1/openapi.json.",
            405: f"{request.method} is not allowed here.",
            413: "The request body is too large.",
        }.get(status, err.description or code)
        headers = {}
        if status == 405 and getattr(err, "valid_methods", None):
            headers["Allow"] = ", ".join(err.valid_methods)
        return problem(status, code, message, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Any:
        log.exception("unexpected error on %s %s", request.method, request.path)
        if not _is_api_request():
            return _page(500)
        return problem(500, "internal_error",
                       "The server hit an unexpected error; nothing was changed. "
                       "Try again, and report it if it persists.")
