"""Helpers shared by the API modules: request bodies, auth, paging, serialisation."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from flask import Response, current_app, g, request

from ..bodies import Body
from ..domain import tickets
from ..domain.errors import ValidationError
from ..domain.model import Desk, Ticket
from ..runtime import runtime
from .errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])


MAX_LIMIT = 500
DEFAULT_LIMIT = 50
MAX_OFFSET = 2**53 - 1
SORT_ORDER_MIN, SORT_ORDER_MAX = -(2**31), 2**31 - 1


# A body this small is read straight from the server's buffer: waitress has read the
# whole body already (and refused one over the limit), and werkzeug's stream wrapper
# costs more than a join's "{}" takes to parse. A body over the app's limit still goes
# to werkzeug, which answers 413.
SMALL_BODY = 4096


def _small_body() -> bytes | None:
    """The body of a request that declared a length of at most ``SMALL_BODY`` bytes, read
    (and kept for ``request.get_data``); ``None`` when werkzeug's stream must read it."""
    req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy look-up
    environ = req.environ
    length = environ.get("CONTENT_LENGTH")
    size = int(length) if length and length.isdigit() else SMALL_BODY + 1
    if (size > min(SMALL_BODY, req.max_content_length or SMALL_BODY)
            or environ.get("wsgi.input_terminated") or "stream" in req.__dict__
            or getattr(req, "_cached_data", None) is not None):
        return None
    raw: bytes = environ["wsgi.input"].read(size)
    req._cached_data = raw  # what get_data(cache=True) returns from now on
    return raw


def _parse_json(raw: bytes) -> Any:
    """The JSON value of ``raw``; ``None`` when it is not JSON or holds text that is not
    valid Unicode."""
    try:
        data = json.loads(raw)
        # Lone surrogates come from \u escapes or from bytes that are not ASCII.
        if b"\\u" in raw or not raw.isascii():
            json.dumps(data, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):
        return None
    return data


def json_body(required: bool = True, allowed: Iterable[str] | None = None) -> dict[str, Any]:
    """The request's JSON object.

    Raises ``ApiError``: 400 when a required body is missing or the body is not a
    JSON object (malformed, too deeply nested, or with text that is not valid
    Unicode), 415 when a body is sent as anything but JSON; ``ValidationError`` 422
    when it holds a field outside ``allowed`` (``None``: any field).
    An empty optional body is ``{}``.
    """
    raw = _small_body()
    if raw is None:
        raw = request.get_data(cache=True)  # before any form parsing; 413 past the limit
    if not raw:
        if required:
            raise ApiError(400, "bad_request", "A JSON object is required as the request body.")
        return {}
    if request.environ.get("CONTENT_TYPE") != "application/json" and not request.is_json:
        raise ApiError(415, "unsupported_media_type",
                       "Send the body as JSON with Content-Type: application/json.")
    data: Any = {} if raw == b"{}" else _parse_json(raw)  # "{}": what most joins send
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", "The request body is not a JSON object.")
    if allowed is not None:
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValidationError(f"Unknown field(s): {', '.join(unknown)}.",
                                  [{"field": k, "message": "is not a known field"}
                                   for k in unknown])
    return data


def read_body(body: type[Body], *, required: bool = True) -> dict[str, Any]:
    """The request's JSON object checked against its declaration; the fields sent.

    400/415 as ``json_body``; 422 ``validation_error`` naming every unknown,
    missing or mistyped field (see ``jonot_local.bodies``).
    """
    return body.parse(json_body(required=required))


def field_type(data: dict[str, Any], name: str, types: type | tuple[type, ...],
               required: bool = False, minimum: int | None = None,
               maximum: int | None = None) -> Any:
    """``data[name]`` checked against ``types`` (None allowed when not required).

    Booleans are not integers here. ``minimum``/``maximum`` bound integers.
    Raises ``ValidationError`` (422) with the field named in ``errors``.
    """
    value = data.get(name)
    if value is None:
        if required:
            raise _field_error(name, "is required")
        return None
    ts = types if isinstance(types, tuple) else (types,)
    value_ok = isinstance(value, ts) and not (isinstance(value, bool) and bool not in ts)
    if not value_ok:
        raise _field_error(name, f"must be {_type_name(ts)}")
    if isinstance(value, int) and not isinstance(value, bool) and (
            (minimum is not None and value < minimum)
            or (maximum is not None and value > maximum)):
        raise _field_error(name, f"must be between {minimum} and {maximum}")
    return value


def _field_error(name: str, message: str) -> ValidationError:
    return ValidationError.field(name, message)


def _type_name(types: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", list: "a list",
             dict: "an object"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def current_user() -> dict[str, Any] | None:
    """The account behind the request's bearer token, ``None`` when there is none.

    An ``Authorization`` header that is present but wrong is refused (401).
    """
    if "user" in g:
        return g.user
    header = request.environ.get("HTTP_AUTHORIZATION", "")  # the Authorization header
    user = None
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "Use 'Authorization: Bearer <token>'.",
                           headers={"WWW-Authenticate": 'Bearer realm="jonot"'})
        user = runtime().account_for_token(token.strip())
        if user is None:
            raise ApiError(401, "unauthorized",
                           "The token is unknown or expired; get a new one from "
                           "POST /api/v1/auth/token.",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    g.user = user
    return user


def require(role: str) -> Callable[[F], F]:
    """Decorator: the request needs a bearer token of ``staff`` (or ``admin``) role."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                raise ApiError(401, "unauthorized",
                               "Sign in first: POST /api/v1/auth/token, then send "
                               "'Authorization: Bearer <token>'.",
                               headers={"WWW-Authenticate": 'Bearer realm="jonot"'})
            if role == "admin" and user["role"] != "admin":
                raise ApiError(403, "forbidden", "This needs an admin account.")
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return deco


def int_arg(name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    """An integer query parameter (plain ASCII digits) within bounds, else a 422."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    digits = raw[1:] if raw.startswith("-") else raw
    value = int(raw) if digits.isascii() and digits.isdigit() and len(raw) <= 20 else None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        bound = f" between {minimum} and {maximum}" if maximum is not None else f" ≥ {minimum}"
        raise _field_error(name, f"must be an integer{bound}")
    return value


def page_args() -> tuple[int, int]:
    """``(limit, offset)`` from the query: limit 1..500 (default 50), offset ≥ 0."""
    return (int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
            int_arg("offset", 0, 0, MAX_OFFSET))


# The bytes ``jsonify`` gives outside debug mode (sorted keys, ASCII, compact), made
# by one encoder built once: a join's answer is the busiest response of the office.
_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=True, separators=(",", ":"))


class _JsonAnswer(Response):
    """A JSON response whose ``Location`` is a URI already (ASCII, nothing to quote):
    sent as it is, without werkzeug's IRI-to-URI pass over it."""

    location_uri: str | None = None

    def get_wsgi_headers(self, environ: Any) -> Any:
        headers = super().get_wsgi_headers(environ)
        if self.location_uri is not None:
            headers["Location"] = self.location_uri
        return headers


def json_response(data: dict[str, Any], status: int = 200,
                  location: str | None = None) -> Response:
    """``jsonify(data), status`` for data made only of JSON types (str, int, float,
    bool, None, lists and dicts of them); anything else raises ``TypeError``.

    ``location``: a ``Location`` header that is a URI already (ASCII only).
    """
    if location is None:
        return current_app.response_class(_ENCODER.encode(data) + "\n", status,
                                          mimetype="application/json")
    resp = _JsonAnswer(_ENCODER.encode(data) + "\n", status, mimetype="application/json")
    resp.location_uri = location
    return resp


def page_of(items: Sequence[Any]) -> dict[str, Any]:
    """A list envelope ``{items, total, limit, offset}`` of one page of ``items``."""
    limit, offset = page_args()
    return {"items": list(items[offset:offset + limit]), "total": len(items),
            "limit": limit, "offset": offset}


def ticket_json(ticket: Ticket, *, private: bool = True) -> dict[str, Any]:
    """A ticket as the API shows it.

    ``private=False`` is the holder's view: no name, phone, notes, extra fields
    or staff ids, and only the labels marked public.
    """
    data = ticket.as_dict()
    data.pop("order_key", None)
    data.pop("origin_queue_id", None)
    data["labels"] = [{**label, "public": label.get("public") is True}
                      for label in data["labels"]]
    if not private:
        data["labels"] = tickets.public_labels(data["labels"])
        data.pop("name", None)
        data.pop("phone", None)
        data.pop("notes", None)
        data.pop("extra", None)
        data.pop("called_by", None)
    return data


def desk_json(desk: Desk) -> dict[str, Any]:
    return desk.as_dict()
