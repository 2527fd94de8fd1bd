"""Bearer tokens for staff and admin tools."""

from __future__ import annotations

from flask import Response, jsonify

from ..bodies import Body, text
from ..runtime import runtime
from ..signin import SignInThrottled
from . import blueprint
from .clients import client_address, current_device
from .common import current_user, read_body, require
from .errors import ApiError


class TokenRequest(Body):
    username = text(required=True)
    password = text(required=True)


@blueprint.post("/auth/token")
def issue_token() -> tuple[Response, int]:
    """Trade ``{"username", "password"}`` for a bearer token.

    401 when wrong; 429 ``rate_limited`` with ``Retry-After`` after repeated
    wrong passwords, or while too many sign-ins wait for a password check.
    """
    body = read_body(TokenRequest)
    guard = runtime().signin
    assert guard is not None, "create_app wires the sign-in guard"
    try:
        done = guard.sign_in(body.get("username"), body.get("password"), client_address(),
                             registered_desk=_from_registered_desk)
    except SignInThrottled as exc:
        raise ApiError(429, "rate_limited", exc.message,
                       headers={"Retry-After": str(exc.retry_after)}) from None
    return jsonify({"token": done.token, "token_type": "Bearer", "expires_at": done.expires_at,
                    "user": done.user}), 201


def _from_registered_desk() -> bool:
    device = current_device()
    return bool(device and device["kind"] == "desk")


@blueprint.get("/auth/me")
@require("staff")
def me() -> Response:
    """The account behind the token."""
    return jsonify(current_user())
