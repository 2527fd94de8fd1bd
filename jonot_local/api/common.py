"""Helpers shared by the API modules: request bodies, auth, paging, serialisation."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g, request

from ..domain import users
from ..domain.model import Desk, Ticket
from ..runtime import runtime
from .errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])


def json_body(required: bool = True) -> dict[str, Any]:
    """The request's JSON object. Raises ``ApiError`` 400/415 for anything else."""
    if not request.data:
        if required:
            raise ApiError(400, "bad_request", "A JSON object is required as the request body.")
        return {}
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type",
                       "Send the body as JSON with Content-Type: application/json.")
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", "The request body is not a JSON object.")
    return data


def field_type(data: dict[str, Any], name: str, types: type | tuple[type, ...],
               required: bool = False) -> Any:
    """``data[name]`` checked against ``types`` (None allowed when not required)."""
    value = data.get(name)
    if value is None:
        if required:
            raise ApiError(422, "validation_error", f"{name}: is required",
                           errors=[{"field": name, "message": "is required"}])
        return None
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        value_ok = False
    else:
        value_ok = isinstance(value, types)
    if not value_ok:
        tname = _type_name(types)
        raise ApiError(422, "validation_error", f"{name}: must be {tname}",
                       errors=[{"field": name, "message": f"must be {tname}"}])
    return value


def _type_name(types: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", list: "a list",
             dict: "an object"}
    ts = types if isinstance(types, tuple) else (types,)
    return " or ".join(names.get(t, t.__name__) for t in ts)


def current_user() -> dict[str, Any] | None:
    """The account behind the request's bearer token, ``None`` when there is none.

    An ``Authorization`` header that is present but wrong is refused (401).
    """
    if "user" in g:
        return g.user
    header = request.headers.get("Authorization", "")
    user = None
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "Use 'Authorization: Bearer <token>'.",
                           headers={"WWW-Authenticate": 'Bearer realm="jonot"'})
        with runtime().store.read() as tx:
            user = users.user_for_token(tx, token.strip())
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
    """An integer query parameter within bounds, else a 422."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        bound = f" between {minimum} and {maximum}" if maximum is not None else f" ≥ {minimum}"
        raise ApiError(422, "validation_error", f"{name}: must be an integer{bound}",
                       errors=[{"field": name, "message": f"must be an integer{bound}"}])
    return value


def ticket_json(ticket: Ticket, *, private: bool = True) -> dict[str, Any]:
    """A ticket as the API shows it. ``private=False`` leaves out name and phone."""
    data = ticket.as_dict()
    data.pop("order_key", None)
    data.pop("origin_queue_id", None)
    if not private:
        data.pop("name", None)
        data.pop("phone", None)
        data.pop("notes", None)
        data.pop("extra", None)
        data.pop("called_by", None)
    return data


def desk_json(desk: Desk) -> dict[str, Any]:
    return desk.as_dict()
