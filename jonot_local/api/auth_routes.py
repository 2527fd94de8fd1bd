"""Bearer tokens for staff and admin tools."""

from __future__ import annotations

from flask import Response, jsonify

from ..domain import users
from ..runtime import runtime
from . import blueprint
from .common import current_user, json_body, require


@blueprint.post("/auth/token")
def issue_token() -> tuple[Response, int]:
    """Trade ``{"username", "password"}`` for a bearer token (401 when wrong)."""
    body = json_body(allowed=("username", "password"))
    settings = runtime().settings
    with runtime().store.write() as tx:
        user = users.authenticate(tx, body.get("username"), body.get("password"))
        token, expires = users.issue_token(tx, user["id"], settings.token_ttl_s)
    return jsonify({"token": token, "token_type": "Bearer", "expires_at": expires,
                    "user": user}), 201


@blueprint.get("/auth/me")
@require("staff")
def me() -> Response:
    """The account behind the token."""
    return jsonify(current_user())
