"""Who is asking: the client's address and the registered device behind a request.

Every per-client budget keys on ``client_address()`` (behind
``trusted_proxies``, the forwarded address). A registered device presents its
token in the ``X-Jonot-Device`` header or, for a browser page that cannot set
headers (EventSource), the ``jonot_device`` cookie.
"""

from __future__ import annotations

from typing import Any

from flask import g, request

from ..domain import devices
from ..runtime import runtime

DEVICE_HEADER = "X-Jonot-Device"
DEVICE_COOKIE = "jonot_device"


def client_address() -> str:
    """The client's address as the app sees it (``unknown`` when there is none)."""
    return request.remote_addr or "unknown"


def device_token() -> str | None:
    """The device credential the request carries, if any (not yet checked)."""
    token = request.headers.get(DEVICE_HEADER) or request.cookies.get(DEVICE_COOKIE)
    token = (token or "").strip()
    return token if 0 < len(token) <= 128 else None


def current_device() -> dict[str, Any] | None:
    """The live registered device behind this request, or ``None`` (looked up once)."""
    if "device" in g:
        return g.device
    token = device_token()
    found = None
    if token is not None:
        with runtime().store.read() as tx:
            found = devices.for_token(tx, token)
    g.device = found
    return found
