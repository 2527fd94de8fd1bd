"""Pairing a registered device: the link an admin's page shows once, opened on the device.

``/kiosk/<id>/pair``, ``/display/pair/<id>`` and ``/pair/desk/<id>`` (outside
``/desk``, whose every path needs a staff sign-in), each with
``?token=<the device's credential>``: the credential goes into the HttpOnly
``jonot_device`` cookie (so the browser is that device from now on, for its
budgets and stream reserve), the device is recorded as paired, and the browser
goes on to its page with the credential gone from the address. A wrong, revoked
or other kind's credential is 404.
"""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from ..api.clients import DEVICE_COOKIE
from ..domain import devices
from ..runtime import runtime
from . import blueprint

PAIR_COOKIE_MAX_AGE = 400 * 24 * 3600  # the longest browsers keep a cookie


def pair(kind: str, device_id: str) -> tuple[dict[str, Any], str]:
    """The device this request's ``?token=`` pairs (of ``kind``, with ``device_id``) and
    the token; aborts 404 otherwise. Records the pairing."""
    raw = (request.args.get("token") or "").strip()
    with runtime().store.write() as tx:
        device = devices.for_token(tx, raw) if 0 < len(raw) <= 128 else None
        if device is None or device["kind"] != kind or device["id"] != device_id:
            abort(404)
        devices.mark_paired(tx, device_id)
    return device, raw


def paired_response(target: str, token: str) -> BaseResponse:
    """Go on to ``target`` with the device cookie set (and no referrer carrying the token)."""
    resp = redirect(target)
    resp.set_cookie(DEVICE_COOKIE, token, max_age=PAIR_COOKIE_MAX_AGE, path="/", httponly=True,
                    samesite="Lax", secure=request.is_secure)
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


@blueprint.get("/display/pair/<device_id>")
def display_pair(device_id: str) -> BaseResponse:
    """Make this browser (a TV's) the registered display; on to its display's page."""
    device, token = pair("display", device_id)
    display_id = device["options"].get("display_id")
    target = (url_for("pages.display", display_id=display_id) if display_id
              else url_for("pages.display"))
    return paired_response(target, token)


@blueprint.get("/pair/desk/<device_id>")
def desk_pair(device_id: str) -> BaseResponse:
    """Make this browser (a desk PC's) a registered desk; on to the desk page."""
    _, token = pair("desk", device_id)
    return paired_response(url_for("pages.desk"), token)
