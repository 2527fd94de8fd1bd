"""Static files with their content hash in the URL, and cache headers to match.

``asset_url("static", "fonts/x.woff2")`` gives ``/static/fonts/x.woff2?v=<hash>``.
A request carrying the file's current hash is cached for a year
(``immutable``); any other request for a static file must revalidate, so a
changed file is never served stale under an old page.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from flask import Flask, Response, current_app, request, url_for
from werkzeug.security import safe_join

IMMUTABLE = "public, max-age=31536000, immutable"
_hashes: dict[tuple[str, float], str] = {}
_lock = threading.Lock()


def _folder(endpoint: str) -> Path:
    if endpoint == "static":
        return Path(current_app.static_folder or "")
    blueprint = current_app.blueprints[endpoint.rsplit(".", 1)[0]]
    return Path(blueprint.static_folder or "")


def file_version(endpoint: str, filename: str) -> str:
    """A short hash of the file's bytes (cached until the file changes)."""
    joined = safe_join(str(_folder(endpoint)), filename)
    if joined is None:
        raise FileNotFoundError(filename)
    path = Path(joined)
    key = (str(path), path.stat().st_mtime)
    found = _hashes.get(key)
    if found is None:
        found = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        with _lock:
            _hashes[key] = found
    return found


def asset_url(endpoint: str, filename: str) -> str:
    """The versioned URL of a static file of ``endpoint`` (``static`` or ``<bp>.static``)."""
    return url_for(endpoint, filename=filename, v=file_version(endpoint, filename))


def _cache_headers(resp: Response) -> Response:
    endpoint = request.endpoint or ""
    if endpoint != "static" and not endpoint.endswith(".static"):
        return resp
    filename = (request.view_args or {}).get("filename", "")
    wanted = request.args.get("v")
    try:
        current = file_version(endpoint, filename) if wanted and resp.status_code < 400 else None
    except OSError:
        current = None
    resp.headers["Cache-Control"] = IMMUTABLE if current and wanted == current else "no-cache"
    return resp


def init_assets(app: Flask) -> None:
    """Give templates ``asset_url`` and static responses their cache headers."""
    app.jinja_env.globals["asset_url"] = asset_url
    app.after_request(_cache_headers)
