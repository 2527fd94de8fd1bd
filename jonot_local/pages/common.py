"""Small helpers the page views share."""

from __future__ import annotations

from flask import request


def is_htmx() -> bool:
    """Whether the request comes from htmx (it wants a fragment, not a page)."""
    return request.headers.get("HX-Request", "").lower() == "true"
